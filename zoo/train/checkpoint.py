"""Checkpoints of the train state and the data iterator, with orbax's CheckpointManager.

Saves are asynchronous (training continues while arrays are written) and atomic: orbax writes a step into a
temporary directory and renames it only when complete, so a crash mid-save leaves the previous checkpoint as the
latest. Restoring takes a target of ShapeDtypeStructs with concrete NamedShardings, which is what makes a restore
onto another mesh or device count work: each array is read straight into the target's layout.
"""

from __future__ import annotations

import grain
import orbax.checkpoint as ocp


class Checkpointer:
  def __init__(self, directory: str, *, max_to_keep: int):
    self.manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                        enable_async_checkpointing=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_iterator: grain.DatasetIterator | None = None) -> None:
    """Starts an asynchronous save of `state` (and the iterator's position, captured now) as `step`."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    self.manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, step: int, abstract_state, data_iterator: grain.DatasetIterator | None = None):
    """The state saved at `step`, laid out as `abstract_state`'s shardings; moves `data_iterator` to its position."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

