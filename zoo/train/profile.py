"""A `jax.profiler` trace of a few training steps (`train.profile_steps`), for TensorBoard's profile tab or Perfetto.

The trace starts before step FIRST and stops before step END, after the previous steps' device work has finished
(dispatch is asynchronous: without the wait the trace would end before the traced steps ran). Each process writes
its own host's trace under `<log_dir or workdir>/profile/plugins/profile/<time>/`. A remote directory (a `gs://`
workdir on Cloud TPU) gets it through etils epath, like the metrics: the profiler writes to a local temporary
directory, copied there and removed when the trace stops — so the trace takes the same credentials and endpoint as
every other file of the run, instead of the profiler's own GCS client.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import jax
from etils import epath


class StepProfiler:
  def __init__(self, steps: tuple[int, int] | None, log_dir: str):
    self.steps = steps
    self.directory = os.path.join(log_dir, "profile")
    self.local = ""  # the trace's directory while it runs: `directory`, or a temporary one for a remote directory
    self.active = False

  def at(self, step: int, state) -> None:
    """Call at the top of every step, before it is dispatched; `state` is the latest train state."""
    if self.steps is None:
      return
    first, end = self.steps
    if step == first:
      self.local = tempfile.mkdtemp(prefix="zoo-profile-") if "://" in self.directory else self.directory
      jax.profiler.start_trace(self.local)
      self.active = True
    elif step == end and self.active:
      self.stop(state)

  def stop(self, state=None) -> None:
    """Ends a trace in progress, after `state` is computed (at END), or as it is (when training ends earlier)."""
    if self.active:
      if state is not None:
        jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.active = False
      if self.local != self.directory:
        copy_tree(self.local, epath.Path(self.directory))
        shutil.rmtree(self.local)


def copy_tree(local: str, remote: epath.Path) -> None:
  for root, _, files in os.walk(local):
    for name in files:
      source = os.path.join(root, name)
      target = remote / os.path.relpath(source, local)
      target.parent.mkdir(parents=True, exist_ok=True)
      target.write_bytes(open(source, "rb").read())
