"""Training logs: `metrics.jsonl` (one JSON object per logging step), TensorBoard event files, a progress bar.

Only the primary process writes. On resume, entries after the restored step are dropped from `metrics.jsonl`, so
the file reads as one uninterrupted run. A remote directory (`gs://...`, the workdir of a Cloud TPU or GKE run,
where a pod's local disk vanishes with the pod) is written through etils epath: an object store has no append, so
the whole `metrics.jsonl` is rewritten at each logging step (one short line per step: small); TensorBoard events go
through tensorboardX's own `gs://` writer.
"""

from __future__ import annotations

import json
import math
import os
import sys

import tensorboardX
import tqdm
from etils import epath


def _lines_until(path: epath.Path, step: int) -> list[str]:
  """The lines of `path` up to and including `step`: what a resume from `step` keeps."""
  if not path.exists():
    return []
  return [line + "\n" for line in path.read_text().splitlines() if line.strip() and
          json.loads(line).get("step", 0) <= step]


class MetricsLogger:
  def __init__(self, workdir: str, *, total_steps: int, start_step: int, enabled: bool, progress_bar: bool):
    self.enabled = enabled
    self.path = epath.Path(workdir) / "metrics.jsonl"
    self.remote = "://" in workdir
    if enabled:
      self.path.parent.mkdir(parents=True, exist_ok=True)  # a separate train.log_dir need not exist yet
      self.lines = _lines_until(self.path, start_step)
      self.path.write_text("".join(self.lines))
      self.file = None if self.remote else open(self.path, "a")
      self.tensorboard = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))
    self.bar = tqdm.tqdm(total=total_steps, initial=start_step, unit="step", file=sys.stderr, dynamic_ncols=True,
                         disable=not (enabled and progress_bar), mininterval=1.0)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    """One line of metrics.jsonl and one TensorBoard scalar per entry (non-finite values become null)."""
    if not self.enabled:
      return
    clean = {name: (float(v) if math.isfinite(float(v)) else None) for name, v in scalars.items()}
    line = json.dumps({"step": step, **clean}) + "\n"
    if self.remote:
      self.lines.append(line)
      self.path.write_text("".join(self.lines))
    else:
      self.file.write(line)
      self.file.flush()
    for name, value in clean.items():
      if value is not None:
        self.tensorboard.add_scalar(name, value, step)

  def advance(self, to_step: int, **postfix: float) -> None:
    """Moves the bar to `to_step`, showing `postfix` (loss, throughput) beside the rate and ETA."""
    self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
    self.bar.update(to_step - self.bar.n)

  def close(self) -> None:
    self.bar.close()
    if self.enabled:
      if self.file:
        self.file.close()
      self.tensorboard.close()
