"""Stop cleanly on a preemption notice or Ctrl-C: SIGTERM, which Cloud TPU VMs and GKE send before they take the
machine away, and SIGINT, which a terminal sends.

The training loop asks `reached(step)` after every step; when it says yes the loop saves a checkpoint at that step,
waits for the save to finish and returns, so rerunning the same command resumes exactly there. `reason` says which
signal it was ("preempted" or "interrupted"; the command line exits 143 or 130). Every process must stop at the same
step (each saves its shards of one checkpoint), but the notice may reach only some of them:

- With `jax.distributed` initialized, JAX's preemption sync manager (the coordination service's, which orbax and
  MaxText use) catches SIGTERM itself, tells the other processes and picks the first step that none has passed yet;
  `reached(step)` is its host-side answer for `step` — no device collective, no wait for the step to finish. Ctrl-C
  at one process is passed on as a SIGTERM to itself, so the same agreement stops them all.
- A single process without `jax.distributed` has nobody to agree with: a signal handler sets a flag, nothing more,
  and the next `reached` sees it.

A second Ctrl-C does not wait for the save: it raises KeyboardInterrupt as usual.
"""

from __future__ import annotations

import os
import signal

import jax
from jax.experimental import multihost_utils


class PreemptionNotice:
  """Call `reached(step)` after each step, `close()` when training ends (restores the previous handlers)."""

  def __init__(self):
    self.signalled = self.interrupted = False
    self.distributed = jax.distributed.is_initialized()
    self._previous = {signal.SIGINT: signal.signal(signal.SIGINT, self._interrupt)}
    if not self.distributed:
      self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame) -> None:
    self.signalled = True

  def _interrupt(self, signum, frame) -> None:
    if self.interrupted:
      raise KeyboardInterrupt
    self.interrupted = True
    if self.distributed:
      os.kill(os.getpid(), signal.SIGTERM)

  @property
  def reason(self) -> str:
    return "interrupted" if self.interrupted else "preempted"

  def reached(self, step: int) -> bool:
    """True once a SIGTERM or SIGINT has arrived (at this process or, distributed, at any) and `step` is the agreed
    stop."""
    if self.distributed:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.signalled or self.interrupted

  def close(self) -> None:
    for signum, previous in self._previous.items():  # a handler installed outside Python reads as None
      signal.signal(signum, signal.SIG_DFL if previous is None else previous)
