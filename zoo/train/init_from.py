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
from zoo.train.options import TrainOptions
from zoo.train.param_paths import TrainableError, flatten, replace

REPORT_FILE = "init_from.json"


class InitFromError(ValueError):
  """The checkpoint's parameters do not fit the model (shapes differ) and the config does not allow it."""


# Config mistakes that only show once the checkpoint or the model exists; the CLI reports them in one line.
ERRORS = (pretrained.CheckpointError, InitFromError, TrainableError)


@dataclasses.dataclass(frozen=True)
class LoadReport:
  source: str  # where the parameters came from
  loaded: list[str]  # same path and shape: copied
  new: list[str]  # only in the model: freshly initialised
  dropped: list[str]  # only in the checkpoint: ignored
  mismatched: dict[str, tuple[list[int], list[int]]]  # path: (checkpoint shape, model shape); freshly initialised

  def summary(self) -> str:
    lines = [f"init_from {self.source}: loaded {len(self.loaded)} parameter(s)"]
    for label, paths in (("new (initialised)", self.new), ("dropped", self.dropped),
                         ("shape-mismatched (initialised)", [f"{p} {a} -> {b}" for p, (a, b) in
                                                             self.mismatched.items()])):
      lines.append(f"  {label}: {', '.join(paths) if paths else 'none'}")
    return "\n".join(lines)


def match(model: dict[str, tuple[int, ...]], checkpoint: dict[str, tuple[int, ...]], source: str) -> LoadReport:
  """Pairs the model's parameter shapes with the checkpoint's by path."""
  common = sorted(set(model) & set(checkpoint))
  return LoadReport(source=source, loaded=[p for p in common if tuple(model[p]) == tuple(checkpoint[p])],
                    new=sorted(set(model) - set(checkpoint)), dropped=sorted(set(checkpoint) - set(model)),
                    mismatched={p: (list(checkpoint[p]), list(model[p])) for p in common
                                if tuple(model[p]) != tuple(checkpoint[p])})


def warm_start(state, train: TrainOptions, workdir: str, *, primary: bool = True):
  """`state` (fresh) with the parameters of `train.init_from` copied in where path and shape match."""
  source_params, _, source = pretrained.load_params(train.init_from, train.init_from_step or None)
  current = flatten(state.params)
  report = match({p: v.shape for p, v in current.items()}, {p: v.shape for p, v in source_params.items()}, source)
  if report.mismatched and not train.init_from_allow_mismatch:
    shapes = "; ".join(f"{p} {a} vs {b}" for p, (a, b) in report.mismatched.items())
    raise InitFromError(f"train.init_from {train.init_from!r}: parameter shapes differ (checkpoint vs model): "
                        f"{shapes}; set train.init_from_allow_mismatch=True to initialise them afresh")

  def placed(path: str) -> jax.Array:  # the checkpoint's array in the fresh one's dtype and sharding
    target = current[path]
    value = np.asarray(source_params[path], target.dtype)
    return jax.make_array_from_callback(value.shape, target.sharding, lambda index: value[index])

  state = state.replace(params=replace(state.params, {p: placed(p) for p in report.loaded}))
  if primary:
    print(report.summary(), flush=True)
    (epath.Path(workdir) / REPORT_FILE).write_text(json.dumps(dataclasses.asdict(report), indent=1))
  return state

