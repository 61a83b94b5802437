"""Training logs: `metrics.jsonl` (one JSON object per logging step), TensorBoard event files, a progress bar.

Only the primary process writes. On resume, entries after the restored step are dropped from `metrics.jsonl`, so
the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import sys

import tensorboardX
import tqdm


def _truncate_after(path: str, step: int) -> None:
  if not os.path.exists(path):
    return
  with open(path) as f:
    kept = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
  with open(path, "w") as f:
    f.writelines(kept)


class MetricsLogger:
  def __init__(self, workdir: str, *, total_steps: int, start_step: int, enabled: bool, progress_bar: bool):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    if enabled:
      os.makedirs(workdir, exist_ok=True)  # a separate train.log_dir need not exist yet
      _truncate_after(self.path, start_step)
      self.file = open(self.path, "a")
      self.tensorboard = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))
    self.bar = tqdm.tqdm(total=total_steps, initial=start_step, unit="step", file=sys.stderr, dynamic_ncols=True,
                         disable=not (enabled and progress_bar), mininterval=1.0)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    """One line of metrics.jsonl and one TensorBoard scalar per entry (non-finite values become null)."""
    if not self.enabled:
      return
    clean = {name: (float(v) if math.isfinite(float(v)) else None) for name, v in scalars.items()}
    self.file.write(json.dumps({"step": step, **clean}) + "\n")
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
      self.file.close()
      self.tensorboard.close()
