"""Checkpoints of the train state and the data iterator, with orbax's CheckpointManager.

Saves are asynchronous (training continues while arrays are written) and atomic: orbax writes a step into a
temporary directory and renames it only when complete, so a crash mid-save leaves the previous checkpoint as the
latest. Restoring takes a target of ShapeDtypeStructs with concrete NamedShardings, which is what makes a restore
onto another mesh or device count work: each array is read straight into the target's layout.

A checkpoint can still be damaged after it was written (a truncated or deleted file, flipped bytes, a half-copied
directory). `restore_latest` then warns in one line naming the step and the problem and restores the newest intact
step; when no step is intact it raises `NoIntactCheckpoint`. The trainer also moves the damaged step aside (into
`damaged_checkpoints/` beside the checkpoints, so later saves of the same step number can proceed and nothing is
deleted); readers (evaluate, generate, convert, init_from, `zoo.pretrained`) pass `set_aside=False`, because the
workdir may belong to a run training in it right now.

A save that fails (a full disk) surfaces in the main thread at the next save, wait or close as one
`CheckpointSaveError` line; the failed step's orbax temporary directory (never listed as a checkpoint) is removed,
which gives a full disk back the space the run's last writes (metrics, TensorBoard events) need.
"""

from __future__ import annotations

import logging
import sys

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from zoo.checkpoints.workdir import first_line, ignore_stragglers_of_failed_reads, unretrieved_future_report
from zoo.errors import CheckpointError


def quiet_background_save_reports() -> None:
  """Orbax logs a failed asynchronous save at ERROR with its traceback once per thread the failure passes through
  (four screens for one full disk) and then raises it in the main thread, where `Checkpointer` reports it in one
  line. This drops those reports — orbax's ERROR records that carry a traceback, and the unretrieved futures of the
  other writes it gave up on — and keeps every other record."""
  logger = logging.getLogger("absl")
  if not any(getattr(f, "drops_orbax_tracebacks", False) for f in logger.filters):
    def keep(record: logging.LogRecord) -> bool:
      return not (record.levelno >= logging.ERROR and record.exc_info and "/orbax/checkpoint/" in record.pathname)
    keep.drops_orbax_tracebacks = True
    logger.addFilter(keep)
  asyncio_logger = logging.getLogger("asyncio")
  if unretrieved_future_report not in asyncio_logger.filters:
    asyncio_logger.addFilter(unretrieved_future_report)


class NoIntactCheckpoint(CheckpointError):
  """Every checkpoint in the directory failed to restore."""


class CheckpointSaveError(CheckpointError):
  """A save failed; the run stops, and the steps saved before it are intact."""


class Checkpointer:
  def __init__(self, directory: str, *, max_to_keep: int, owner: bool = False):
    """`owner`: the process that trains in this directory (it holds the workdir's lock). Only it removes the
    `*.orbax-checkpoint-tmp` folders that a killed save or a full disk left; a reader must not, since they may be
    a running trainer's save in progress."""
    quiet_background_save_reports()
    self.manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                        enable_async_checkpointing=True,
                                                        cleanup_tmp_directories=owner))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_iterator: grain.DatasetIterator | None = None) -> None:
    """Starts an asynchronous save of `state` (and the iterator's position, captured now) as `step`."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    try:  # waits for the previous save first, so its failure surfaces here
      self.manager.save(step, args=ocp.args.Composite(**items), force=True)
    except Exception as e:  # noqa: BLE001 — orbax and TensorStore raise many kinds
      raise self.failed_save(e) from None

  def restore(self, step: int, abstract_state, data_iterator: grain.DatasetIterator | None = None):
    """The state saved at `step`, laid out as `abstract_state`'s shardings; moves `data_iterator` to its position."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

  def restore_latest(self, abstract_state, data_iterator: grain.DatasetIterator | None = None, *,
                     set_aside: bool = True):
    """(step, state) of the newest intact checkpoint, or None when there is none at all (see the module docstring);
    `set_aside=False` leaves damaged steps where they are.

    Any error while reading a step counts as damage — orbax and TensorStore raise many kinds — so the warning names
    the error; a target that no step can match (a changed model) ends in `NoIntactCheckpoint` with each cause."""
    failures, warnings = [], []  # the warnings are printed once a step restores; the error names every failure
    ignore_stragglers_of_failed_reads()
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        state = self.restore(step, abstract_state, data_iterator)
      except Exception as e:  # noqa: BLE001 — see the docstring
        failures.append(f"step {step}: {first_line(e)}")
        moved = f"moved to {self.set_aside(step)}, " if set_aside else ""
        warnings.append(f"warning: checkpoint step {step} is damaged ({first_line(e)}); {moved}trying the previous "
                        f"step")
        continue
      if warnings:
        print(*warnings, sep="\n", file=sys.stderr, flush=True)
      return step, state
    if failures:
      aside = f"; set aside in {epath.Path(self.manager.directory).parent / 'damaged_checkpoints'}" if set_aside else ""
      raise NoIntactCheckpoint(f"no intact checkpoint in {self.manager.directory} ({'; '.join(failures)}){aside}")
    return None

  def restore_step(self, step: int, abstract_state):
    """The state of `step` (one a user named), or a CheckpointError in one line when it is missing or damaged: no
    fallback to another step, since the user asked for this one."""
    steps = self.manager.all_steps()
    if step not in steps:
      raise CheckpointError(f"{self.manager.directory} has no checkpoint of step {step}; steps: "
                            f"{', '.join(map(str, sorted(steps))) or '(none)'}")
    ignore_stragglers_of_failed_reads()
    try:
      return self.restore(step, abstract_state)
    except Exception as e:  # noqa: BLE001 — any read error is damage, as in restore_latest
      raise CheckpointError(f"checkpoint step {step} in {self.manager.directory} is damaged ({first_line(e)})"
                            ) from None

  def set_aside(self, step: int) -> epath.Path:
    """Moves step `step` out of the manager's directory into `damaged_checkpoints/` beside it (process 0 moves,
    every process waits for it)."""
    directory = epath.Path(self.manager.directory)
    aside = directory.parent / "damaged_checkpoints"
    target, copy = aside / str(step), 1
    while target.exists():  # the same step number damaged again after a later run re-saved it
      target, copy = aside / f"{step}.{copy}", copy + 1
    if jax.process_index() == 0:
      target.parent.mkdir(parents=True, exist_ok=True)
      (directory / str(step)).rename(target)
    multihost_utils.sync_global_devices(f"zoo: checkpoint step {step} set aside")
    self.manager.reload()
    return target

  def wait(self) -> None:
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001 — as in save
      raise self.failed_save(e) from None

  def failed_save(self, error: Exception) -> CheckpointSaveError:
    """Removes the temporary directories of saves that failed (none is in flight once orbax raised) and returns the
    one-line error, naming a full disk (TensorStore puts it at the end of a long message)."""
    if jax.process_index() == 0:
      for path in epath.Path(self.manager.directory).iterdir():
        if ".orbax-checkpoint-tmp" in path.name:
          path.rmtree(missing_ok=True)
    reason = "no space left on device" if "No space left on device" in str(error) else first_line(error)
    return CheckpointSaveError(f"saving a checkpoint in {self.manager.directory} failed ({reason}); the steps saved "
                               f"before it are intact")

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self.manager.close()

