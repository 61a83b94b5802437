"""Pieces of the training code against closed forms: schedules, losses, logical→mesh rules, mixed precision."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smoke_config, tiny
from flax import nnx
from jax.sharding import PartitionSpec as P

from zoo import models, sharding
from zoo import decay
from zoo.sharding import logical_to_mesh
from zoo.train import losses
from zoo.train.mesh import make_mesh
from zoo.train.optimizer import learning_rate_schedule, make_optimizer
from zoo.train.options import OptimizerOptions, parse_experiment
from zoo.train.step import make_program

PEAK, WARMUP, TOTAL, END = 1e-3, 10, 110, 0.1


@pytest.mark.parametrize("kind", ["constant", "cosine", "linear", "rsqrt"])
def test_schedules_follow_their_formulas(kind):
  schedule = learning_rate_schedule(OptimizerOptions(learning_rate=PEAK, schedule=kind, warmup_steps=WARMUP,
                                                     end_factor=END), TOTAL)
  for step in (0, 5, WARMUP):
    np.testing.assert_allclose(schedule(step), PEAK * step / WARMUP, rtol=1e-6)
  for step in (WARMUP + 1, 60, TOTAL):
    t = (step - WARMUP) / (TOTAL - WARMUP)
    expected = {"constant": PEAK,
                "cosine": PEAK * (END + (1 - END) * 0.5 * (1 + math.cos(math.pi * t))),
                "linear": PEAK * (1 + (END - 1) * t),
                "rsqrt": PEAK * math.sqrt(WARMUP / step)}[kind]
    np.testing.assert_allclose(schedule(step), expected, rtol=1e-5)


def test_token_cross_entropy_and_accuracy_sums_against_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
  targets = rng.integers(0, 7, size=(3, 5))
  weights = (rng.random((3, 5)) > 0.3).astype(np.float32)
  sums = losses.token_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights))
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(sums["loss"], (nll * weights).sum(), rtol=1e-5)
  np.testing.assert_allclose(sums["accuracy"], ((logits.argmax(-1) == targets) * weights).sum())
  np.testing.assert_allclose(sums["weight"], weights.sum())
  means = losses.finalize(sums)
  np.testing.assert_allclose(means["loss"], (nll * weights).sum() / weights.sum(), rtol=1e-5)


def test_regression_sums_mse_and_mae():
  sums = losses.objective_sums("regression", jnp.array([[1.0], [2.0], [4.0]]),
                               {"targets": jnp.array([0.0, 2.0, 1.0]), "weights": jnp.array([1.0, 1.0, 0.5])})
  np.testing.assert_allclose(sums["loss"], 1 + 0 + 0.5 * 9)
  np.testing.assert_allclose(sums["mae"], 1 + 0 + 0.5 * 3)


def test_logical_rules_map_names_to_mesh_axes_and_use_each_axis_once():
  rules = (("batch", ("data", "fsdp")), ("embed", ("fsdp",)), ("heads", ("tensor",)), ("mlp", ("tensor",)))
  assert logical_to_mesh(("batch", None), rules) == P(("data", "fsdp"), None)
  assert logical_to_mesh(("embed", "heads", "kv"), rules) == P("fsdp", "tensor", None)
  assert logical_to_mesh(("heads", "mlp"), rules) == P("tensor", None)  # tensor already shards the heads
  assert logical_to_mesh(("vocab", "embed"), rules) == P(None, "fsdp")  # no rule: replicated


def test_parameters_are_laid_out_by_the_rules_on_a_mesh(data_dir):
  experiment = parse_experiment(smoke_config(data_dir))
  tx, schedule = make_optimizer(experiment.optimizer, 10)
  mesh = make_mesh((2, 2, 2), jax.devices())
  program, init = make_program(experiment.model_name, experiment.model, seed=0, tx=tx, schedule=schedule,
                               objective="token_classification", grad_accum_steps=1, mesh=mesh,
                               rules=experiment.rules)
  state = init()
  query = state.params["backbone"]["blocks"][0]["attention"]["query"]["kernel"]  # [embed, heads, kv]
  assert query.sharding.spec == P("fsdp", "tensor", None)
  assert query.addressable_shards[0].data.shape == (16 // 2, 2 // 2, 8)
  adam_mu = jax.tree.leaves(state.opt_state)[1:]  # optimizer moments follow their parameter's sharding
  assert any(getattr(leaf, "sharding", None) == query.sharding and leaf.shape == query.shape for leaf in adam_mu)


def test_bfloat16_compute_keeps_float32_parameters(data_dir, tmp_path):
  from zoo.train import loop  # noqa: PLC0415

  config = smoke_config(data_dir, steps=2, log_every=1)
  config["model"]["dtype"] = "bfloat16"
  summary = loop.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  assert math.isfinite(summary["loss"])
  experiment = parse_experiment(config)
  tx, schedule = make_optimizer(experiment.optimizer, 2)
  program, _ = make_program(experiment.model_name, experiment.model, seed=0, tx=tx, schedule=schedule,
                            objective="token_classification", grad_accum_steps=1,
                            mesh=make_mesh((1, 1, 1), jax.devices()[:1]), rules=experiment.rules)
  assert {leaf.dtype for leaf in jax.tree.leaves(program.abstract_state.params)} == {jnp.dtype("float32")}


def decayed_paths(model) -> set[str]:
  params = nnx.state(model, nnx.Param)
  flat = jax.tree_util.tree_flatten_with_path(decay.mask(params), is_leaf=lambda x: isinstance(x, nnx.Variable))[0]
  return {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path) for path, on in flat if on.get_value()}


@pytest.mark.parametrize("pe", ["urpe", "rpe", "t5_bias", "learned", "spe_sine", "spd_urpe"])
def test_weight_decay_skips_positional_tables_norms_and_biases(pe):
  model = models.build("encoder", tiny(pe, attention=dict(impl="linear" if pe.startswith("spe") else "xla"),
                                       head="token", num_classes=3))
  decayed = decayed_paths(model)
  assert decayed, "no parameter decays at all"
  assert all(path.endswith(("/kernel", "/embedding")) for path in decayed), decayed  # matrices only
  assert not any("positional" in path or "/encoding/" in path for path in decayed), decayed
  assert "backbone/blocks/0/attention/query/kernel" in decayed and "embed/table/embedding" in decayed


def test_urpe_c_keeps_its_value_under_weight_decay_when_its_gradient_is_zero():
  """With zero gradients AdamW's update is the decay alone: C (initialised to 1) must not move; kernels must."""
  model = models.build("decoder", tiny("urpe"))
  params = nnx.state(model, nnx.Param)
  tx, _ = make_optimizer(OptimizerOptions(learning_rate=0.1, weight_decay=0.5, warmup_steps=0,
                                            clip_norm=0.0), 10)
  zeros = jax.tree.map(jnp.zeros_like, params)
  opt_state = tx.init(params)
  for _ in range(3):
    updates, opt_state = tx.update(zeros, opt_state, params)
    params = jax.tree.map(jnp.add, params, updates)
  c = params["backbone"]["blocks"][0]["attention"]["encoding"]["c"][...]
  np.testing.assert_array_equal(c, np.ones_like(c))
  mlp = params["backbone"]["blocks"][0]["mlp"]
  before = nnx.state(model, nnx.Param)["backbone"]["blocks"][0]["mlp"]
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(mlp), jax.tree.leaves(before)))


def test_activation_specs_follow_the_rules_and_drop_axes_that_do_not_divide():
  mesh = make_mesh((2, 2, 2), jax.devices())
  rules = (("batch", ("data", "fsdp")), ("heads", ("tensor",)))
  assert sharding.activation_spec((("batch", 8), ("heads", 4))) is None  # outside `use`: one device
  with sharding.use(mesh, rules):
    assert sharding.target_platform() == "cpu"
    assert sharding.activation_spec((("batch", 8), ("heads", 4))) == P(("data", "fsdp"), "tensor")
    assert sharding.activation_spec((("batch", 2), ("heads", 3))) == P("data", None)
    assert sharding.activation_spec((("batch", 1), ("heads", 2))) == P(None, "tensor")
  with sharding.use(make_mesh((1, 1, 1), jax.devices()[:1]), rules):
    assert sharding.activation_spec((("batch", 8), ("heads", 4))) is None


@pytest.mark.parametrize("section,options,message", [
    ("train", dict(profile_steps="8:5"), "train: profile_steps must be \"FIRST:END\" with 1 <= FIRST < END "
                                         "(traces steps FIRST..END-1) or \"\" (off), got '8:5'"),
    ("train", dict(profile_steps="5-8"), "got '5-8'"),
    ("train", dict(profile_steps="0:2"), "got '0:2'"),
    ("mesh", dict(slices=0), "mesh: slices must be >= 1, got 0"),
])
def test_bad_profile_steps_and_slices_fail_in_one_line(data_dir, section, options, message):
  config = smoke_config(data_dir)
  config[section].update(options)
  with pytest.raises(ValueError) as error:
    parse_experiment(config)
  assert message in str(error.value) and "\n" not in str(error.value)


def test_the_data_axis_must_split_over_the_slices(data_dir):
  config = smoke_config(data_dir)
  config["mesh"].update(data=3, fsdp=2, slices=2)
  with pytest.raises(ValueError, match=r"^mesh: the data axis \(3\) must be a multiple of slices \(2\): it is the "
                                       r"axis that spans the slices$"):
    parse_experiment(config).check_devices(6)


def test_profile_steps_is_a_half_open_range_or_off(data_dir):
  config = smoke_config(data_dir)
  assert parse_experiment(config).train.profile_range is None
  config["train"]["profile_steps"] = "5:8"
  assert parse_experiment(config).train.profile_range == (5, 8)


STRAGGLERS = """
import asyncio, gc, sys
from zoo.train import checkpoint
checkpoint.ignore_stragglers_of_failed_reads()
loop = asyncio.new_event_loop()
future = loop.create_future()
future.set_exception(ValueError("OUT_OF_RANGE: Error reading byte range of a truncated file"))  # never retrieved
del future
gc.collect()
loop.close()
class Report:
  exc_type, exc_value, exc_traceback, err_msg, object = RuntimeError, RuntimeError("Event loop is closed"), 0, 0, 0
sys.unraisablehook(Report())
print("other reports still pass", file=sys.stderr)
"""


def test_reports_of_straggling_reads_after_a_failed_restore_are_dropped():
  """Both channels by which TensorStore's in-flight reads report after a failed restore stay silent; the CLI test of
  damaged checkpoints meets them only when its timing happens to (CI once printed such a traceback)."""
  import subprocess
  import sys
  result = subprocess.run([sys.executable, "-c", STRAGGLERS], capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert result.stderr.strip() == "other reports still pass", result.stderr
