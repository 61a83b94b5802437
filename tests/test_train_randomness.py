"""Training steps that draw randomness — dropout, attention dropout, SPE noise, FAVOR+ features — for every registered
encoding and every attention impl (see CASES), in both sequence families and the graph family, through the real
jitted train step (model merged inside `jax.grad`, RNG state carried in the train state). The matrix comes from
the registries: a new encoding joins it when it is registered.

Wave 1's suite trained only with dropout 0, so a step that draws randomness crashed at step 1 unnoticed; here every
combination trains two steps, the RNG streams advance, and the draws are live (another RNG state, another loss).
"""

import math

import jax
import numpy as np
import pytest
from conftest import TINY, default_or_slow, per_token_options, tiny

from zoo import models, positional
from zoo.train import loop
from zoo.train.mesh import batch_sharding, make_mesh
from zoo.train.optimizer import make_optimizer
from zoo.train.options import OptimizerOptions
from zoo.train.step import compile_steps, make_program

IMPLS = ("xla", "chunked", "pallas", "linear")
OBJECTIVES = {"encoder": "token_classification", "decoder": "next_token"}
RULES = (("batch", ("data", "fsdp")), ("embed", ("fsdp",)), ("heads", ("tensor",)), ("mlp", ("tensor",)))
BATCH, LENGTH = 4, 12


def model_config(family: str, pe: str, impl: str) -> dict | None:
  """The tiny model with dropout on (attention dropout too where the impl has it), or None when the model's config
  validation refuses this encoding with this impl (linear attention cannot apply logit biases or scales)."""
  config = tiny(pe, num_layers=1, dropout=0.1, attention=dict(impl=impl, dropout=0.1 if impl == "xla" else 0.0),
                **per_token_options(family))
  try:
    models.parse_config(family, config)
  except ValueError:
    return None
  return config


def train_twice(family: str, config: dict, grad_accum_steps: int = 1):
  """Two optimizer steps from one initial state, and one more first step from that state with the RNG state the
  first step left behind. Returns (first metrics, second metrics, first metrics under the advanced RNG state,
  RNG state before, RNG state after)."""
  tx, schedule = make_optimizer(OptimizerOptions(weight_decay=0.1, warmup_steps=0, clip_norm=0.0), 2)
  mesh = make_mesh((1, 1, 1), jax.devices()[:1])
  program, init = make_program(family, config, seed=0, tx=tx, schedule=schedule, objective=OBJECTIVES[family],
                               grad_accum_steps=grad_accum_steps, mesh=mesh, rules=RULES)
  tokens = np.random.default_rng(0).integers(1, TINY["vocab_size"], (BATCH, LENGTH)).astype(np.int32)
  targets = tokens % 5 if family == "encoder" else np.roll(tokens, -1, axis=1)
  batch = {"inputs": tokens, "targets": targets}
  train, _ = compile_steps(program, {name: batch_sharding(mesh, RULES, 2) for name in batch})
  state = init()
  rest_before = jax.device_get(state.rest)
  first_state, first = train(state, batch)
  rest_after = jax.device_get(first_state.rest)
  _, second = train(first_state, batch)
  again = init().replace(rest=jax.device_put(rest_after))
  _, first_redrawn = train(again, batch)
  return first, second, first_redrawn, rest_before, rest_after


# Randomness enters a training step through the encoding (its parameters, SPE's noise stream) and through the core
# (attention dropout, FAVOR+ features); pairing the two adds no path of its own (every encoding through every core,
# forward and gradients, is test_encoding_properties' and test_attention_kernels' matrix). So the slow suite trains
# every encoding in both families on the dense core and every core on the stochastic encodings; the default suite one
# combination per randomness source: dropout around the fused kernel, SPE noise with FAVOR+ features (linear), both
# families (attention dropout with URPE's C on xla trains in test_train.py's eight-device run and the CLI journeys).
STOCHASTIC = [name for name in positional.available() if getattr(positional.get(name), "stochastic", False)]
DEFAULT = {("encoder", "urpe", "pallas"), ("decoder", "spe_sine", "linear")}
MATRIX = sorted({(family, pe, "xla") for family in OBJECTIVES for pe in positional.available()}
                | {(family, pe, impl) for family in OBJECTIVES for pe in STOCHASTIC for impl in IMPLS} | DEFAULT)
CASES = [pytest.param(family, pe, impl, id=f"{family}-{pe}-{impl}",
                      marks=() if (family, pe, impl) in DEFAULT else pytest.mark.slow)
         for family, pe, impl in MATRIX]


@pytest.mark.parametrize("family,pe,impl", CASES)
def test_two_training_steps_with_dropout_and_noise(family, pe, impl):
  config = model_config(family, pe, impl)
  if config is None:
    pytest.skip(f"the {family} config refuses {pe!r} with attention.impl={impl!r}")
  first, second, first_redrawn, rest_before, rest_after = train_twice(family, config)
  assert all(math.isfinite(float(m["loss"])) for m in (first, second, first_redrawn))
  counters = lambda rest: [np.asarray(x) for x in jax.tree.leaves(rest) if not jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key)]
  assert any((a != b).any() for a, b in zip(counters(rest_before), counters(rest_after))), "no RNG stream advanced"
  # Same parameters and batch, another RNG state: different dropout masks (and noise), so a different loss.
  assert float(first["loss"]) != float(first_redrawn["loss"])


def test_gradient_accumulation_carries_the_rng_state_through_its_micro_batches():
  first, second, first_redrawn, rest_before, rest_after = train_twice(
      "decoder", model_config("decoder", "spe_sine", "xla"), grad_accum_steps=2)
  assert all(math.isfinite(float(m["loss"])) for m in (first, second, first_redrawn))
  assert float(first["loss"]) != float(first_redrawn["loss"])


@pytest.mark.parametrize("pe", default_or_slow([name for name in positional.available()
                                                 if positional.get(name).reads_relation], ("spd_urpe",)))
def test_graph_family_trains_with_dropout_through_the_cli_config(pe, data_dir, tmp_path):
  from configs import graph_distance  # noqa: PLC0415

  config = graph_distance.get_config(f"{pe},smoke").to_dict()
  config["model"]["dropout"] = config["model"]["attention"]["dropout"] = 0.1
  config["train"].update(data_dir=data_dir, progress_bar=False, steps=2, log_every=1, checkpoint_every=0)
  summary = loop.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  assert math.isfinite(summary["loss"]) and math.isfinite(summary["eval_loss"])
