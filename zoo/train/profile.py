"""A `jax.profiler` trace of a few training steps (`train.profile_steps`), for TensorBoard's profile tab or Perfetto.

The trace starts before step FIRST and stops before step END, after the previous steps' device work has finished
(dispatch is asynchronous: without the wait the trace would end before the traced steps ran). Each process writes
its own host's trace under `<log_dir or workdir>/profile/plugins/profile/<time>/`.
"""

from __future__ import annotations

import os

import jax


class StepProfiler:
  def __init__(self, steps: tuple[int, int] | None, log_dir: str):
    self.steps = steps
    self.directory = os.path.join(log_dir, "profile")
    self.active = False

  def at(self, step: int, state) -> None:
    """Call at the top of every step, before it is dispatched; `state` is the latest train state."""
    if self.steps is None:
      return
    first, end = self.steps
    if step == first:
      jax.profiler.start_trace(self.directory)
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
