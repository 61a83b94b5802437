"""Pretrained models: the checkpoints shipped in `checkpoints/`, and any training workdir, loaded by one call.

  model, config = zoo.pretrained.load("lm_rope")               # a shipped name (see available())
  model, config = zoo.pretrained.load("/tmp/zoo/pi_urpe")      # a workdir: its latest checkpoint
  model, config = zoo.pretrained.load("/tmp/zoo/pi_urpe/checkpoints/400")  # one step of it
  model, config = zoo.pretrained.load("/models/tiny-llama")         # a Hugging Face directory (zoo.convert.hf)
  model, config = zoo.pretrained.load("/tmp/zoo/tiny-llama")        # what `launch.convert --from_hf` wrote
  zoo.pretrained.save(model, config, "/tmp/zoo/mine")               # a folder `load` reads back

Every source gives a config of one shape: `model_name` (the family), `model` (its options, the encoding among them)
and, when the model was trained on one of zoo's tasks, the experiment's `task` and other sections.

Reading and writing the files is `zoo.checkpoints` (safetensors, manifests, workdirs, the one dispatch over sources),
a floor below the models and training; this module adds what needs them: the family of a task's config, the model
built with its parameters, and Hugging Face directories (importing `zoo.convert.hf` registers its reader).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from zoo import models
from zoo.checkpoints import sources
from zoo.checkpoints.manifest import (CHECKPOINTS, CONFIG_FILE, MANIFEST, available, file_entry, info,  # noqa: F401
                                      manifest, sha256, write_config)
from zoo.checkpoints.sources import Loaded, write_converted  # noqa: F401 — part of this module's interface
from zoo.convert import hf  # noqa: F401 — registers the Hugging Face directory reader
from zoo.errors import CheckpointError  # noqa: F401 — part of this module's interface
from zoo.models import scan
from zoo.models.config import nest
from zoo.train import param_paths
from zoo.train.options import task_of


def _with_family(config: dict[str, Any]) -> dict[str, Any]:
  """An experiment config with `model_name`, the family its task trains, and its model options in sections (one
  stored before them, as the shipped checkpoints' are, read through `nest`): the shape every source's config has."""
  config = {**config, "model": nest(config["model"])} if isinstance(config.get("model"), dict) else config
  return config if "model_name" in config else {**config, "model_name": task_of(config).family}


def load_config(source: str, *, root: str | os.PathLike = CHECKPOINTS) -> dict[str, Any]:
  """The config `load_params(source)` gives, without reading or checking any parameter: what a fine-tune of `source`
  inherits (`zoo.train.init_from.fine_tune_config`), cheap enough to ask before anything is built."""
  return _with_family(sources.load_config(source, root=root))


def load_params(source: str, step: int | None = None, *, root: str | os.PathLike = CHECKPOINTS) -> Loaded:
  """The parameters and config of a shipped name, a workdir (latest checkpoint or `step`) or a checkpoint folder
  in one, a Hugging Face directory or a converted one; a shipped model's file sizes and sha256 are checked first."""
  loaded = sources.load_params(source, step, root=root)
  return loaded._replace(config=_with_family(loaded.config))


def build(config: dict[str, Any], params: dict[str, np.ndarray]) -> nnx.Module:
  """The model of experiment `config` (or of a converted model's model_name + model) with `params` (every
  parameter of the model must be given, shapes equal)."""
  from zoo.train.options import parse_experiment  # noqa: PLC0415 — the task registry is only needed here

  if "task" in config:
    experiment = parse_experiment(config)
    model = models.build(experiment.model_name, experiment.model)
  else:
    model = models.build(config["model_name"], config["model"])
  graph, current, rest = nnx.split(model, nnx.Param, ...)
  wanted = param_paths.flatten(current)
  params = scan.match_layout(params, {p: v.shape for p, v in wanted.items()})  # scanned layers or not
  report = param_paths.match({p: v.shape for p, v in wanted.items()}, {p: v.shape for p, v in params.items()}, "")
  if report.new or report.mismatched:
    raise CheckpointError(f"the checkpoint does not fit the model of this config: missing {report.new or 'none'}; "
                          f"shapes differ (checkpoint vs model) {report.mismatched or 'none'}")
  values = {path: jax.numpy.asarray(params[path], wanted[path].dtype) for path in wanted}
  return nnx.merge(graph, param_paths.replace(current, values), rest)


def load(source: str, step: int | None = None, *, root: str | os.PathLike = CHECKPOINTS
         ) -> tuple[nnx.Module, ml_collections.ConfigDict]:
  """(model in eval mode, its config) for a shipped name, a workdir or a checkpoint folder in one, a Hugging Face
  directory or a converted one; the config has `model_name` and `model`, and `task` etc. when known."""
  loaded = load_params(source, step, root=root)
  model = build(loaded.config, loaded.params)
  model.eval()
  return model, ml_collections.ConfigDict(loaded.config)


def save(model: nnx.Module, config: dict[str, Any] | ml_collections.ConfigDict, directory: str | os.PathLike) -> None:
  """Writes `model`'s parameters (as they are: trained, fine-tuned, edited) with `config` (what `load` returned)
  as a converted folder, which `load`, `train.init_from` and every command read back as the same model."""
  config = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  params = {path: np.asarray(value) for path, value in param_paths.flatten(nnx.state(model, nnx.Param)).items()}
  experiment = {k: v for k, v in config.items() if k not in ("model_name", "model")}
  write_converted(directory, config["model_name"], config["model"], params, "zoo.pretrained.save", experiment)
