"""Train state, its creation on a mesh, and the pure train / eval steps that `jax.jit` compiles.

The model is split once into a static graph definition and two states: parameters (what the optimizer updates) and
the rest (RNG stream keys and counters for dropout and for random features / noise). The steps merge them back into
a model inside the traced function; the rest is carried in the train state, so the random streams advance exactly
as they would in an uninterrupted run and a restored run continues them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from zoo import models, sharding
from zoo.train import losses
from zoo.sharding import Rules
from zoo.train.mesh import replicated, state_shardings
from zoo.train.optimizer import make_optimizer
from zoo.train.param_paths import learning_rate_factor, trainable_only

@struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimizer updates done
  params: nnx.State
  opt_state: optax.OptState
  rest: nnx.State  # non-parameter model state (RNG keys and counters)


@dataclasses.dataclass(frozen=True)
class Program:
  """The static half of training: graph definitions, optimizer, objective and the state's shardings."""

  train_graph: nnx.GraphDef
  eval_graph: nnx.GraphDef
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  objective: str
  grad_accum_steps: int
  mesh: jax.sharding.Mesh
  rules: Rules  # logical axis → mesh axes, for the state and for the activations the kernels shard
  abstract_state: TrainState  # ShapeDtypeStructs
  shardings: TrainState  # NamedShardings, same structure


def model_outputs(model: nnx.Module, batch: dict[str, jax.Array]) -> jax.Array:
  """The model on `batch["inputs"]` and the batch fields its family declares (`batch_fields`) that the batch has."""
  return model(batch["inputs"], **{name: batch[name] for name in model.batch_fields if name in batch})


def make_program(model_name: str, model_config: Any, *, seed: int, tx: optax.GradientTransformation,
                 schedule: optax.Schedule, objective: str, grad_accum_steps: int, mesh: jax.sharding.Mesh,
                 rules: Rules) -> tuple[Program, Callable[[], TrainState]]:
  """The Program and an `init()` that creates the state directly in its shardings (no host copy of the model)."""

  def init() -> TrainState:
    model = models.build(model_name, model_config, seed=seed)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rest=rest)

  abstract_model = nnx.eval_shape(lambda: models.build(model_name, model_config, seed=seed))
  train_graph, abstract_params, abstract_rest = nnx.split(abstract_model, nnx.Param, ...)
  abstract_model.eval()
  eval_graph = nnx.graphdef(abstract_model)
  param_shardings = state_shardings(abstract_params, mesh, rules)
  abstract_state = jax.eval_shape(init)
  shardings = TrainState(
      step=replicated(mesh), params=param_shardings,
      opt_state=optax.tree_map_params(tx, lambda _, sharding: sharding, abstract_state.opt_state, param_shardings,
                                      transform_non_params=lambda _: replicated(mesh),
                                      is_leaf=lambda x: isinstance(x, jax.sharding.NamedSharding)),
      rest=state_shardings(abstract_rest, mesh, rules))
  abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state,
                                shardings)
  program = Program(train_graph=train_graph, eval_graph=eval_graph, tx=tx, schedule=schedule, objective=objective,
                    grad_accum_steps=grad_accum_steps, mesh=mesh, rules=rules, abstract_state=abstract_state,
                    shardings=shardings)
  return program, jax.jit(init, out_shardings=shardings)


def experiment_program(experiment, mesh: jax.sharding.Mesh) -> tuple[Program, Callable[[], TrainState]]:
  """`make_program` for a validated `Experiment`: its optimizer (on the `train.trainable` parameters, the
  `optimizer.lr_factor_params` ones at their own rate), model and objective; what the training loop runs and what
  restoring a workdir's checkpoint needs as its target."""
  t, o = experiment.train, experiment.optimizer
  tx, schedule = make_optimizer(o, t.steps)
  tx = trainable_only(learning_rate_factor(tx, o.lr_factor_params, o.lr_factor), t.trainable)
  return make_program(experiment.model_name, experiment.model, seed=t.seed, tx=tx,
                      schedule=schedule, objective=experiment.task.objective, grad_accum_steps=t.grad_accum_steps,
                      mesh=mesh, rules=experiment.rules)


def _add(a, b):
  return jax.tree.map(jnp.add, a, b)


def train_step(program: Program, state: TrainState, batch: dict[str, jax.Array]):
  """One optimizer update on `batch` [global_batch, ...], split into `grad_accum_steps` micro-batches."""

  def loss_fn(params, rest, micro_batch):
    model = nnx.merge(program.train_graph, params, rest, copy=True)  # copy: RNG counters mutate under grad
    sums = losses.objective_sums(program.objective, model_outputs(model, micro_batch), micro_batch)
    return sums["loss"], (sums, nnx.state(model, nnx.Not(nnx.Param)))

  grad_fn = jax.grad(loss_fn, has_aux=True)
  accum = program.grad_accum_steps
  if accum == 1:
    grads, (sums, rest) = grad_fn(state.params, state.rest, batch)
  else:
    # Micro-batch m takes rows m, m + accum, ...: every device keeps an equal share of each micro-batch.
    micro = jax.tree.map(lambda x: x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1), batch)

    def accumulate(carry, micro_batch):
      grads, sums, rest = carry
      g, (s, rest) = grad_fn(state.params, rest, micro_batch)
      return (_add(grads, g), _add(sums, s), rest), None

    first = jax.tree.map(lambda x: x[0], micro)
    grads, (sums, rest) = grad_fn(state.params, state.rest, first)
    rest_batches = jax.tree.map(lambda x: x[1:], micro)
    (grads, sums, rest), _ = jax.lax.scan(accumulate, (grads, sums, rest), rest_batches)
  grads = jax.tree.map(lambda g: g / jnp.maximum(sums["weight"], 1e-9), grads)  # gradient of the weighted mean
  updates, opt_state = program.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {**losses.finalize(sums), "learning_rate": program.schedule(state.step),
             "grad_norm": optax.tree.norm(grads), "param_norm": optax.tree.norm(params)}
  return TrainState(step=state.step + 1, params=params, opt_state=opt_state, rest=rest), metrics


def eval_step(program: Program, state: TrainState, batch: dict[str, jax.Array]) -> losses.Sums:
  """Summed loss and metrics on `batch` with the model in evaluation mode (no dropout, fixed noise)."""
  model = nnx.merge(program.eval_graph, state.params, state.rest)
  return losses.objective_sums(program.objective, model_outputs(model, batch), batch)


@dataclasses.dataclass(frozen=True)
class OnMesh:
  """A jitted step that is traced (called or lowered) under `zoo.sharding.use(mesh, rules)`, so the code inside
  sees the devices it is compiled for: `auto` and the Pallas kernels choose and shard by the mesh's platform."""

  jitted: Any
  mesh: jax.sharding.Mesh
  rules: Rules

  def __call__(self, *args):
    with sharding.use(self.mesh, self.rules):
      return self.jitted(*args)

  def lower(self, *args):
    with sharding.use(self.mesh, self.rules):
      return self.jitted.lower(*args)


def compile_steps(program: Program, batch_shardings: dict[str, jax.sharding.NamedSharding]):
  """`jax.jit`-ed train and eval steps with explicit shardings; the train step donates the old state."""
  mesh = program.mesh
  train = jax.jit(lambda s, b: train_step(program, s, b), in_shardings=(program.shardings, batch_shardings),
                  out_shardings=(program.shardings, replicated(mesh)), donate_argnums=0)
  # Evaluation batches may carry other fields than training ones (padded rows without the segment ids of packed
  # training rows): their arrays arrive laid out by `batch_shardings` already, so jit takes the layout they have.
  evaluate = jax.jit(lambda s, b: eval_step(program, s, b), in_shardings=(program.shardings, None),
                     out_shardings=replicated(mesh))
  return OnMesh(train, mesh, program.rules), OnMesh(evaluate, mesh, program.rules)
