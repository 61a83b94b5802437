"""Evaluating given parameters outside training: what `launch.evaluate` and `launch.make_pretrained` run.

The metrics are the training loop's own (`loop.evaluate`: the validation split's first `train.eval_batches` batches
of `eval_batch_size`, in order, summed exactly), on one device, so a shipped checkpoint's manifest metric is
reproduced bit for bit by the same code on the same data.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from zoo.data import make_dataset
from zoo.errors import CheckpointError
from zoo.train import loop
from zoo.train.init_from import load_into
from zoo.train.mesh import batch_sharding, make_mesh
from zoo.train.options import parse_experiment
from zoo.train.step import compile_steps, experiment_program


def evaluate_params(config: dict[str, Any], params: dict[str, np.ndarray], source: str) -> dict[str, float]:
  """Validation metrics of experiment `config`'s model with `params` (every parameter it has must be given)."""
  experiment = parse_experiment(config)
  t = experiment.train
  mesh = make_mesh(experiment.check_devices(1), jax.devices()[:1])
  program, init = experiment_program(experiment, mesh)
  state, report = load_into(init(), params, source)
  if report.new:
    raise CheckpointError(f"{source} lacks parameters of this config's model: {', '.join(report.new)}")
  _, eval_source = loop.open_splits(experiment)
  first = next(iter(make_dataset(experiment.task, eval_source, batch_size=t.resolved_eval_batch_size, seed=t.seed,
                                 train=False)))
  shardings = {name: batch_sharding(mesh, experiment.rules, value.ndim) for name, value in first.items()}
  _, eval_fn = compile_steps(program, shardings)
  return loop.evaluate(experiment, eval_fn, state, eval_source, shardings)
