"""Stop cleanly on a preemption notice: SIGTERM, which Cloud TPU VMs and GKE send before they take the machine away.

The training loop asks `reached(step)` after every step; when it says yes the loop saves a checkpoint at that step,
waits for the save to finish and returns, so rerunning the same command resumes exactly there. Every process must
stop at the same step (each saves its shards of one checkpoint), but the notice may reach only some of them:

- With `jax.distributed` initialized, JAX's preemption sync manager (the coordination service's, which orbax and
  MaxText use) catches SIGTERM itself, tells the other processes and picks the first step that none has passed yet;
  `reached(step)` is its host-side answer for `step` — no device collective, no wait for the step to finish.
- A single process without `jax.distributed` has nobody to agree with: a SIGTERM handler sets a flag, nothing more,
  and the next `reached` sees it.
"""

from __future__ import annotations

import signal

import jax
from jax.experimental import multihost_utils


class PreemptionNotice:
  """Call `reached(step)` after each step, `close()` when training ends (restores the previous SIGTERM handler)."""

  def __init__(self):
    self.signalled = False
    self.distributed = jax.distributed.is_initialized()
    if not self.distributed:
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame) -> None:
    self.signalled = True

  def reached(self, step: int) -> bool:
    """True once a SIGTERM has arrived (at this process or, distributed, at any) and `step` is the agreed stop."""
    if self.distributed:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.signalled

  def close(self) -> None:
    if not self.distributed:  # a handler installed outside Python reads as None: fall back to the default
      signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous is None else self._previous)
