"""The sharded training loop in-process: meshes agree, accumulation is exact, checkpoints restore anywhere."""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import smoke_config

from zoo.train import loop
from zoo.train.checkpoint import Checkpointer
from zoo.train.mesh import make_mesh
from zoo.train.optimizer import make_optimizer
from zoo.train.options import parse_experiment
from zoo.train.step import make_program

STEPS = 4


def losses(workdir) -> list[float]:
  lines = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  return [line["loss"] for line in lines if "loss" in line]


def saved_state(checkpointer: Checkpointer, step: int):
  """The state as written (no target: the saved layout), for comparisons."""
  return checkpointer.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]


def run(tmp_path, name, config, devices):
  workdir = tmp_path / name
  summary = loop.train_and_evaluate(config, str(workdir), devices=devices)
  return workdir, summary


def with_dropout(config: dict) -> dict:
  config["model"]["dropout"] = config["model"]["attention"]["dropout"] = 0.1
  return config


@pytest.fixture(scope="module")
def eight_device_run(tmp_path_factory, data_dir):
  """4 steps with dropout on a (data 2, fsdp 2, tensor 2) mesh of 8 simulated devices, logging every step."""
  config = with_dropout(smoke_config(data_dir, steps=STEPS, log_every=1, checkpoint_every=2))
  config["mesh"] = dict(data=2, fsdp=2, tensor=2)
  return run(tmp_path_factory.mktemp("train"), "mesh222", config, jax.devices())


def test_eight_devices_on_a_2x2x2_mesh_match_one_device(tmp_path, data_dir, eight_device_run):
  workdir8, summary8 = eight_device_run
  workdir1, summary1 = run(tmp_path, "one", with_dropout(smoke_config(data_dir, steps=STEPS, log_every=1)),
                           jax.devices()[:1])
  # Same data, same initial parameters, the same dropout masks (JAX's partitionable threefry draws the same bits
  # however the array is sharded); only the reduction order differs across devices (float32).
  np.testing.assert_allclose(losses(workdir8), losses(workdir1), rtol=2e-5)
  assert len(losses(workdir1)) == STEPS
  np.testing.assert_allclose(summary8["eval_loss"], summary1["eval_loss"], rtol=2e-5)


def test_the_fused_kernel_trains_on_a_2x2x2_mesh_like_on_one_device(tmp_path, data_dir):
  """attention.impl="pallas" inside the sharded train step: the kernel runs under shard_map over the batch (data,
  fsdp) and head (tensor) axes, and its table gradients are summed across batch shards."""
  one, eight = (smoke_config(data_dir, steps=3, log_every=1) for _ in range(2))
  for config in (one, eight):
    config["model"]["attention"]["impl"] = "pallas"
  eight["mesh"] = dict(data=2, fsdp=2, tensor=2)
  workdir8, _ = run(tmp_path, "pallas8", eight, jax.devices())
  workdir1, _ = run(tmp_path, "pallas1", one, jax.devices()[:1])
  np.testing.assert_allclose(losses(workdir8), losses(workdir1), rtol=2e-5)


def test_cached_decoding_through_the_kernel_on_a_mesh_equals_one_device():
  """Generation with the Pallas kernel under `zoo.sharding.use`: a batch of 2 splits over data, 2 heads over
  tensor, the rest replicated; the tokens equal the unsharded run's."""
  from conftest import TINY, tiny  # noqa: PLC0415
  from zoo import models, sharding  # noqa: PLC0415

  model = models.build("decoder", tiny("urpe", attention=dict(impl="pallas")), seed=3)
  prompts = jax.random.randint(jax.random.key(0), (2, 5), 1, TINY["vocab_size"])
  generate = lambda: models.generate(model, prompts, max_new_tokens=6, rng=jax.random.key(1))
  single = generate()
  with sharding.use(make_mesh((2, 2, 2), jax.devices()), (("batch", ("data",)), ("heads", ("tensor",)))):
    sharded = generate()
  np.testing.assert_array_equal(np.asarray(sharded), np.asarray(single))


def test_gradient_accumulation_matches_one_big_batch(tmp_path, data_dir):
  one = run(tmp_path, "accum1", smoke_config(data_dir, steps=STEPS, log_every=1), jax.devices()[:1])[0]
  four = run(tmp_path, "accum4", smoke_config(data_dir, steps=STEPS, log_every=1, grad_accum_steps=4),
             jax.devices()[:1])[0]
  np.testing.assert_allclose(losses(four), losses(one), rtol=2e-5)


@pytest.mark.parametrize("mesh_shape", [(1, 1, 1), (1, 4, 1)], ids=["one_device", "fsdp4"])
def test_checkpoint_from_eight_devices_restores_onto_another_mesh(eight_device_run, data_dir, mesh_shape):
  workdir, _ = eight_device_run
  config = with_dropout(smoke_config(data_dir))  # the model that wrote the checkpoints
  experiment = parse_experiment(config)
  tx, schedule = make_optimizer(experiment.optimizer, experiment.train.steps)
  checkpointer = Checkpointer(str(workdir / "checkpoints"), max_to_keep=3)
  step = checkpointer.latest_step()
  saved = saved_state(checkpointer, step)
  devices = jax.devices()[:int(np.prod(mesh_shape))]
  mesh = make_mesh(mesh_shape, devices)
  program, _ = make_program(experiment.model_name, experiment.model, seed=0, tx=tx, schedule=schedule,
                            objective=experiment.task.objective, grad_accum_steps=1, mesh=mesh,
                            rules=experiment.rules)
  restored = checkpointer.restore(step, program.abstract_state)
  checkpointer.close()
  assert int(restored.step) == STEPS
  restored_leaves = jax.tree.leaves(restored.params)
  assert {d for leaf in restored_leaves for d in leaf.sharding.device_set} == set(devices)
  for want, got in zip(jax.tree.leaves(saved["params"]), restored_leaves, strict=True):
    np.testing.assert_array_equal(np.asarray(got), want)


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path, data_dir):
  config = smoke_config(data_dir, steps=6, log_every=1, checkpoint_every=1)
  # Warm-up from 0: step 1 changes nothing, step 2 (learning rate 5e29) sends the parameters to infinity.
  config["optimizer"].update(name="sgd", learning_rate=1e30, warmup_steps=2, schedule="constant", clip_norm=0.0)
  with pytest.raises(loop.NonFiniteLoss, match="non-finite .* at step 2; the last good checkpoint is step 1"):
    loop.train_and_evaluate(config, str(tmp_path / "nan"), devices=jax.devices()[:1])
  checkpointer = Checkpointer(str(tmp_path / "nan" / "checkpoints"), max_to_keep=3)
  assert checkpointer.latest_step() == 1
  params = saved_state(checkpointer, 1)["params"]
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))
  checkpointer.close()
