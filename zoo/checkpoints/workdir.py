"""A training workdir's parameters, read from its orbax checkpoint without building a training program: the
checkpoint's own metadata gives each parameter's shape and dtype, and only the `params` subtree is read, onto the
first local device.

A damaged latest step is a warning and the previous step is read, as when training resumes, but left in place: a
run may be training in this workdir right now (the trainer's `zoo.train.checkpoint.Checkpointer` moves it aside).
"""

from __future__ import annotations

import json
import logging
import pathlib
import sys

import jax
import numpy as np

from zoo.checkpoints.manifest import CONFIG_FILE
from zoo.errors import CheckpointError


def locate(path: pathlib.Path, step: int | None) -> tuple[pathlib.Path, int | None]:
  """A workdir, its checkpoints/ folder or one step folder in it → (workdir, step or None for the latest)."""
  if path.name.isdigit() and path.parent.name == "checkpoints":
    return path.parent.parent, int(path.name) if step is None else step
  if path.name == "checkpoints":
    return path.parent, step
  return path, step


def first_line(error: BaseException, limit: int = 300) -> str:
  """The error's type and first line, without TensorStore's spec dump, at most `limit` characters."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  text = f"{type(error).__name__}: {lines[0] if lines else ''}".split(" [tensorstore_spec")[0]
  return text if len(text) <= limit else text[:limit - 1] + "…"


def ignore_stragglers_of_failed_reads() -> None:
  """After a failed restore, TensorStore's reads that were still in flight finish after orbax gave up on them and
  surface as a screen of tracebacks around the one-line warning, by two channels: `RuntimeError: Event loop is
  closed` through `sys.unraisablehook` (a read completing into orbax's closed event loop), and asyncio's "Future
  exception was never retrieved" log record (a failed read's future collected unread). Installed before restoring
  (a report can come before the failure reaches us), it drops those reports, and only those, from then on."""
  previous = sys.unraisablehook
  if getattr(previous, "drops_closed_loop_reports", False):
    return

  def hook(report):
    if not (isinstance(report.exc_value, RuntimeError) and str(report.exc_value) == "Event loop is closed"):
      previous(report)

  hook.drops_closed_loop_reports = True
  sys.unraisablehook = hook
  logging.getLogger("asyncio").addFilter(unretrieved_future_report)


def unretrieved_future_report(record: logging.LogRecord) -> bool:
  """False for asyncio's report of a failed future collected unread ("Future / Task / _GatheringFuture exception was
  never retrieved"): what a failed read or write that orbax gave up on leaves behind."""
  return not str(record.msg).split("\n", 1)[0].endswith("exception was never retrieved")


def read_params(step_dir: pathlib.Path) -> dict[str, np.ndarray]:
  """{parameter path: array} of one checkpoint step (its `state` item), shapes and dtypes from its metadata."""
  import orbax.checkpoint as ocp  # noqa: PLC0415 — only workdirs need orbax

  handler = ocp.PyTreeCheckpointHandler()
  item = step_dir / "state"
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        handler.metadata(item).tree["params"])
  restored = ocp.PyTreeCheckpointer().restore(item, args=ocp.args.PyTreeRestore(
      item={"params": target}, restore_args={"params": ocp.checkpoint_utils.construct_restore_args(target)},
      partial_restore=True))["params"]
  # An nnx parameter is saved as {"value": array} under its module path: the path is the module path alone.
  return {"/".join(str(k.key) for k in keypath[:-1]): np.asarray(leaf)
          for keypath, leaf in jax.tree_util.tree_flatten_with_path(restored)[0]}


def read(workdir: pathlib.Path, step: int | None) -> tuple[dict[str, np.ndarray], dict, int]:
  """(parameters, config, step) of a training workdir: checkpoint `step`, or the newest intact one."""
  import orbax.checkpoint as ocp  # noqa: PLC0415

  config = json.loads((workdir / CONFIG_FILE).read_text())
  directory = workdir / "checkpoints"
  steps = sorted(ocp.utils.checkpoint_steps(directory), reverse=True) if directory.exists() else []
  ignore_stragglers_of_failed_reads()
  if step is not None:
    if step not in steps:
      raise CheckpointError(f"{directory} has no checkpoint of step {step}; steps: "
                            f"{', '.join(map(str, sorted(steps))) or '(none)'}")
    try:
      return read_params(directory / str(step)), config, step
    except Exception as e:  # noqa: BLE001 — orbax and TensorStore raise many kinds; any read error is damage
      raise CheckpointError(f"checkpoint step {step} in {directory} is damaged ({first_line(e)})") from None
  failures, warnings = [], []  # the warnings are printed once a step reads; the error names every failure
  for candidate in steps:
    try:
      params = read_params(directory / str(candidate))
    except Exception as e:  # noqa: BLE001 — as above
      failures.append(f"step {candidate}: {first_line(e)}")
      warnings.append(f"warning: checkpoint step {candidate} is damaged ({first_line(e)}); trying the previous step")
      continue
    if warnings:
      print(*warnings, sep="\n", file=sys.stderr, flush=True)
    return params, config, candidate
  if failures:
    raise CheckpointError(f"no intact checkpoint in {directory} ({'; '.join(failures)})")
  raise CheckpointError(f"workdir {workdir} has no checkpoint")
