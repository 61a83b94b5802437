"""Fine-tuning: a fresh train state whose parameters come from a pretrained model, a workdir or a checkpoint folder.

`train.init_from` loads parameters only — the optimizer state, step, RNG streams and data position stay those of
the fresh state — matched by path and shape. Parameters the new model adds (another head, another encoding's
tables) keep their fresh initialisation, parameters it lacks are dropped, and parameters whose shape differs are an
error naming them unless `train.init_from_allow_mismatch` lets them be initialised afresh. The training loop applies
this only when the workdir has no checkpoint: once it has one, resuming wins, so a restarted fine-tuning run
continues where it stopped instead of starting over. The load report (loaded, new, dropped, shape-mismatched and
frozen parameters) is printed and written to `<workdir>/init_from.json`.

A fine-tune is the checkpoint's model unless the config says otherwise: `fine_tune_config` gives the config every
model option the checkpoint states (RoPE's base and scaling, norms, biases, heads, ...) that the config file and
the command line leave unset. It runs where a config becomes a training run (`launch.train`, `loop`), after the
command line's overrides, so `--config.model.positional.name=rope` on a RoPE checkpoint keeps its base; the workdir's
`config.json` then records the complete options.

Sources are read by `zoo.checkpoints.sources`; a Hugging Face directory is one once `zoo.convert.hf` is imported
(`zoo.pretrained` and `launch.train` import it).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from etils import epath

from zoo.checkpoints import sources
from zoo.errors import CheckpointError
from zoo.models import scan
from zoo.models.config import merge, nest
from zoo.train.options import TrainOptions, options_for_task, task_of
from zoo.train.param_paths import PathPatternError, flatten, frozen, match, replace

REPORT_FILE = "init_from.json"


class InitFromError(ValueError):
  """The checkpoint's parameters do not fit the model (shapes differ) and the config does not allow it."""


# Config mistakes that only show once the checkpoint or the model exists; the CLI reports them in one line.
ERRORS = (CheckpointError, InitFromError, PathPatternError)


def fine_tune_config(config: Mapping[str, Any]) -> dict[str, Any]:
  """`config` with the model options of `train.init_from`'s checkpoint under its own `model` section.

  The options the config states win, section by section key by key (a checkpoint stored before the sections is
  read through `nest`); the task's own model fields (vocabulary, length) come from the task. The encoding's options
  follow the checkpoint's (under any the config states) when the final `positional.name` is the checkpoint's, and
  are only the config's when the name changes: another encoding's options would not apply. A config
  without `init_from`, or whose task trains another family than the checkpoint's, is returned as it is; applying
  it twice changes nothing.
  """
  config = copy.deepcopy(dict(config))
  train = config.get("train")
  source = train.get("init_from") if isinstance(train, Mapping) else None  # parse_experiment names a bad section
  if not source:
    return config
  checkpoint = sources.load_config(source)
  task = task_of(config)
  if (checkpoint.get("model_name") or task_of(checkpoint).family) != task.family:
    return config
  stated = dict(config.get("model") or {})
  options = options_for_task(nest(checkpoint["model"]), task)
  model = merge(options, stated)  # a section the config states overrides the checkpoint's key by key
  pe, stated_pe = options.get("positional", {}), stated.get("positional") or {}
  inherited = dict(pe.get("options") or {}) if stated_pe.get("name", pe.get("name")) == pe.get("name") else {}
  if "positional" in model:
    model["positional"] = {**model["positional"], "options": {**inherited, **dict(stated_pe.get("options") or {})}}
  config["model"] = model
  return config


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
  loaded = sources.load_params(train.init_from, train.init_from_step or None)
  try:
    state, report = load_into(state, loaded.params, f"train.init_from {train.init_from!r} ({loaded.source})",
                              allow_mismatch=train.init_from_allow_mismatch)
  except InitFromError as e:
    raise InitFromError(f"{e}; set train.init_from_allow_mismatch=True to initialise them afresh") from None
  report = dataclasses.replace(report, frozen=frozen(flatten(state.params), train.trainable))
  if primary:
    print(report.summary(), flush=True)
    (epath.Path(workdir) / REPORT_FILE).write_text(json.dumps(dataclasses.asdict(report), indent=1))
  return state
