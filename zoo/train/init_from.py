"""Fine-tuning: a fresh train state whose parameters come from a pretrained model, a workdir or a checkpoint folder.

`train.init_from` loads parameters only — the optimizer state, step, RNG streams and data position stay those of
the fresh state — matched by path and shape. Parameters the new model adds (another head, another encoding's
tables) keep their fresh initialisation, parameters it lacks are dropped, and parameters whose shape differs are an
error naming them unless `train.init_from_allow_mismatch` lets them be initialised afresh. The training loop applies
this only when the workdir has no checkpoint: once it has one, resuming wins, so a restarted fine-tuning run
continues where it stopped instead of starting over. The load report is printed and written to
`<workdir>/init_from.json`.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
from etils import epath

from zoo import pretrained
from zoo.models import scan
from zoo.train.options import TrainOptions
from zoo.train.param_paths import TrainableError, flatten, match, replace

REPORT_FILE = "init_from.json"


class InitFromError(ValueError):
  """The checkpoint's parameters do not fit the model (shapes differ) and the config does not allow it."""


# Config mistakes that only show once the checkpoint or the model exists; the CLI reports them in one line.
ERRORS = (pretrained.CheckpointError, InitFromError, TrainableError)


def load_into(state, params: dict[str, np.ndarray], source: str, *, allow_mismatch: bool = False):
  """(`state` with `params` copied in where path and shape match, in its dtypes and shardings; the LoadReport)."""
  current = flatten(state.params)
  params = scan.match_layout(params, {p: v.shape for p, v in current.items()})  # scanned layers or not
  report = match({p: v.shape for p, v in current.items()}, {p: v.shape for p, v in params.items()}, source)
  if report.mismatched and not allow_mismatch:
    shapes = "; ".join(f"{p} {a} vs {b}" for p, (a, b) in report.mismatched.items())
    raise InitFromError(f"{source}: parameter shapes differ (checkpoint vs model): {shapes}")

  def placed(path: str) -> jax.Array:
    target = current[path]
    value = np.asarray(params[path], target.dtype)
    return jax.make_array_from_callback(value.shape, target.sharding, lambda index: value[index])

  return state.replace(params=replace(state.params, {p: placed(p) for p in report.loaded})), report


def warm_start(state, train: TrainOptions, workdir: str, *, primary: bool = True):
  """`state` (fresh) with the parameters of `train.init_from` copied in where path and shape match."""
  loaded = pretrained.load_params(train.init_from, train.init_from_step or None)
  try:
    state, report = load_into(state, loaded.params, f"train.init_from {train.init_from!r} ({loaded.source})",
                              allow_mismatch=train.init_from_allow_mismatch)
  except InitFromError as e:
    raise InitFromError(f"{e}; set train.init_from_allow_mismatch=True to initialise them afresh") from None
  if primary:
    print(report.summary(), flush=True)
    (epath.Path(workdir) / REPORT_FILE).write_text(json.dumps(dataclasses.asdict(report), indent=1))
  return state
