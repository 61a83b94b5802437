"""`model.scan_layers` and `model.remat`: the same numbers as the plain layer loop, for every encoding (tables shared
across layers and per layer), every attention implementation, dropout, cached decoding and checkpoints."""

import dataclasses
import json
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import REPO, TINY, cli_env, default_or_slow, random_tokens, representative_or_slow, smoke_config, tiny
from test_graph import TINY_GRAPH, batch_of, random_graph_example
from zoo import attention, models, positional, pretrained
from zoo.models import scan
from zoo import decay
from zoo.train import init_from
from zoo.train.mesh import make_mesh
from zoo.train.options import parse_experiment
from zoo.train.param_paths import flatten
from zoo.train.step import experiment_program

SEQUENCE_ENCODINGS = [n for n in positional.available() if not positional.get(n).reads_relation]
GRAPH_ENCODINGS = [n for n in positional.available() if positional.get(n).reads_relation]
# Encodings whose tables can be one per layer (`share_across_layers=False`): those layers stack them.
PER_LAYER = [n for n in positional.available()
             if "share_across_layers" in {f.name for f in dataclasses.fields(positional.get(n).Options)}]


def shapes(tree) -> dict:
  return {path: np.shape(value) for path, value in flatten(tree).items()}


def loss_and_grads(model, loss_fn):
  """loss_fn(model) and its gradient with respect to the parameters, as the train step takes them (random streams
  advance inside the differentiated function)."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  def f(params):
    return loss_fn(nnx.merge(graphdef, params, rest, copy=True))
  return jax.jit(jax.value_and_grad(f))(params)


def assert_same_model(family, config, loss_fn, **scanned):
  """A plain model and its scanned twin (`scanned` options on top of `config`) built from one seed hold the same
  parameters, and give the same loss and gradients (≤ 1e-5)."""
  plain = models.build(family, config, seed=3)
  twin = models.build(family, dict(config, scan_layers=True, **scanned), seed=3)
  target = shapes(nnx.state(twin, nnx.Param))
  stacked = scan.stack_layers(flatten(nnx.state(plain, nnx.Param)), target)
  assert set(stacked) == set(target)
  for path, value in flatten(nnx.state(twin, nnx.Param)).items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(stacked[path]), err_msg=path)
  (loss, grads), (twin_loss, twin_grads) = loss_and_grads(plain, loss_fn), loss_and_grads(twin, loss_fn)
  np.testing.assert_allclose(float(twin_loss), float(loss), rtol=1e-5, atol=1e-5)
  grads = scan.stack_layers(flatten(grads), target)
  for path, value in flatten(twin_grads).items():
    np.testing.assert_allclose(np.asarray(value), np.asarray(grads[path]), rtol=1e-5, atol=1e-5, err_msg=path)


def token_loss(tokens):
  return lambda model: jnp.mean(model(tokens) ** 2)


# The scan is encoding-agnostic but for per-layer tables (below): one encoding by default, the registry when slow.
@pytest.mark.parametrize("pe", default_or_slow(SEQUENCE_ENCODINGS, ("urpe",)))
def test_scan_equals_the_layer_loop_with_dropout(pe):
  """Dropout on: the scanned layers draw the same masks (their streams are the loop's, stacked)."""
  config = tiny(pe, dropout=0.1, attention=dict(dropout=0.1))
  assert_same_model("decoder", config, token_loss(random_tokens(0, (2, 12))))


@pytest.mark.parametrize("pe", [n if n == "urpe" else pytest.param(n, marks=pytest.mark.slow)
                                for n in PER_LAYER if n in SEQUENCE_ENCODINGS])
def test_scan_stacks_per_layer_tables(pe):
  config = tiny(pe, positional=dict(options=dict(share_across_layers=False)), dropout=0.1)
  assert_same_model("decoder", config, token_loss(random_tokens(1, (2, 12))))


@pytest.mark.parametrize("impl", default_or_slow([n for n in attention.available() if n != "auto"], ("xla",)))
def test_scan_equals_the_layer_loop_for_every_attention_impl(impl):
  pe = "spe_sine" if impl == "linear" else "urpe"
  assert_same_model("encoder", tiny(pe, attention=dict(impl=impl), head="token", num_classes=5),
                    token_loss(random_tokens(2, (2, 12))), remat="dots_saveable")


GRAPH_PER_LAYER = [n for n in GRAPH_ENCODINGS if n in PER_LAYER]


@pytest.mark.parametrize("pe,share", [(GRAPH_PER_LAYER[0], False)]
                         + [pytest.param(n, False, marks=pytest.mark.slow) for n in GRAPH_PER_LAYER[1:]]
                         + [pytest.param(GRAPH_PER_LAYER[0], True, marks=pytest.mark.slow)]
                         + [pytest.param(n, None, marks=pytest.mark.slow) for n in GRAPH_ENCODINGS
                            if n not in PER_LAYER])
def test_scan_equals_the_layer_loop_on_graphs(pe, share):
  """Per-layer graph encodings run the `embed` hook (degree centrality) from layer 0's slice of the stack; share
  None: an encoding that is always shared (GraphGPS's node encodings)."""
  batch = batch_of([random_graph_example(seed)[1] for seed in (0, 1)])
  fields = {k: v for k, v in batch.items() if k != "inputs"}
  config = tiny(pe, TINY_GRAPH, positional=dict(options={} if share is None else dict(share_across_layers=share)))
  assert_same_model("graph", config, lambda model: jnp.mean(model(batch["inputs"], **fields) ** 2))


# Slow: the default suite rematerialises in the scan test above (dots_saveable) and the CLI journey below (full).
@pytest.mark.slow
@pytest.mark.parametrize("scan_layers,remat", [(False, "dots_saveable"), (True, "full")])
def test_remat_changes_nothing(scan_layers, remat):
  config = tiny("urpe", dropout=0.1, attention=dict(dropout=0.1), scan_layers=scan_layers)
  loss_fn = token_loss(random_tokens(3, (2, 12)))
  (loss, grads), (remat_loss, remat_grads) = (
      loss_and_grads(models.build("decoder", dict(config, remat=r), seed=0), loss_fn) for r in ("none", remat))
  assert float(remat_loss) == pytest.approx(float(loss), abs=1e-6)
  for a, b in zip(jax.tree.leaves(remat_grads), jax.tree.leaves(grads)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pe,impl", [("urpe", "xla"), pytest.param("t5_bias", "pallas", marks=pytest.mark.slow),
                                     pytest.param("rope", "linear", marks=pytest.mark.slow)])
def test_scanned_cached_generation_equals_the_layer_loop(pe, impl):
  """The scanned decoder's cache is stacked [layers, ...] (KV slots or linear attention's recurrent state)."""
  config = tiny(pe, attention=dict(impl=impl))
  plain, twin = (models.build("decoder", dict(config, scan_layers=s), seed=4) for s in (False, True))
  cache = twin.init_cache(2, 16)
  assert all(np.shape(leaf)[0] == TINY["num_layers"] for leaf in jax.tree.leaves(cache.layers))
  prompts = random_tokens(5, (2, 6))
  outputs = [models.generate(m, prompts, max_new_tokens=6, rng=jax.random.key(0), temperature=0.8)
             for m in (plain, twin)]
  np.testing.assert_array_equal(np.asarray(outputs[1]), np.asarray(outputs[0]))


def test_layouts_convert_into_each_other():
  config = tiny("spe_conv", positional=dict(options=dict(share_across_layers=False)))
  plain, twin = (models.build("decoder", dict(config, scan_layers=s), seed=0) for s in (False, True))
  plain_params, twin_params = flatten(nnx.state(plain, nnx.Param)), flatten(nnx.state(twin, nnx.Param))
  back = scan.unstack_layers(scan.stack_layers(plain_params, shapes(twin_params)), shapes(plain_params))
  assert set(back) == set(plain_params)
  for path, value in plain_params.items():
    np.testing.assert_array_equal(np.asarray(back[path]), np.asarray(value), err_msg=path)
  assert scan.match_layout(twin_params, shapes(plain_params)).keys() == plain_params.keys()
  # Weight decay applies to the same parameters (a stacked norm scale is 2-d but still a vector per layer).
  plain_decay, twin_decay = (flatten(decay.mask(nnx.state(m, nnx.Param))) for m in (plain, twin))
  decayed = lambda mask: {re.sub(r"blocks/\d+/", "blocks/", path) for path, applies in mask.items() if applies}
  assert decayed(plain_decay) == decayed(twin_decay)
  assert scan.match_layout(plain_params, shapes(plain_params)).keys() == plain_params.keys()


def test_a_scanned_rematerialised_cli_run_restores_into_an_unscanned_model_and_back(tmp_path, data_dir):
  workdir = tmp_path / "scanned"
  result = subprocess.run(
      [sys.executable, "-m", "launch.train", "--config=configs/pi.py:urpe,smoke", "--config.model.scan_layers=true",
       "--config.model.remat=full", "--config.train.steps=3", f"--config.train.data_dir={data_dir}",
       "--config.train.progress_bar=false", f"--workdir={workdir}"],
      cwd=REPO, env=cli_env(1), capture_output=True, text=True, timeout=240)
  assert result.returncode == 0, result.stderr[-3000:]
  loaded = pretrained.load_params(str(workdir))
  assert loaded.step == 3 and loaded.config["model"]["scan_layers"]
  scanned_model, _ = pretrained.load(str(workdir))
  unscanned_config = json.loads(json.dumps(loaded.config))
  unscanned_config["model"].update(scan_layers=False, remat="none")
  unscanned_model = pretrained.build(unscanned_config, loaded.params)
  unscanned_model.eval()
  tokens = random_tokens(6, (2, 8), vocab=scanned_model.config.vocab_size)
  np.testing.assert_allclose(np.asarray(unscanned_model(tokens)), np.asarray(scanned_model(tokens)), rtol=1e-5,
                             atol=1e-5)
  # ... and back: the unscanned parameters rebuild the scanned model exactly.
  unscanned_params = {p: np.asarray(v) for p, v in flatten(nnx.state(unscanned_model, nnx.Param)).items()}
  again = pretrained.build(loaded.config, unscanned_params)
  for path, value in flatten(nnx.state(again, nnx.Param)).items():
    np.testing.assert_array_equal(np.asarray(value), loaded.params[path], err_msg=path)
  # train.init_from of the scanned workdir into an unscanned run.
  config = smoke_config(data_dir, init_from=str(workdir))
  experiment = parse_experiment(config)
  _, init = experiment_program(experiment, make_mesh((1, 1, 1), jax.devices()[:1]))
  state = init_from.warm_start(init(), experiment.train, str(tmp_path))  # writes its report there
  for path, value in flatten(state.params).items():
    np.testing.assert_array_equal(np.asarray(value), unscanned_params[path], err_msg=path)


@pytest.mark.parametrize("option,value,message", [
    ("remat", "some", "option 'remat' = 'some' is not a valid choice; valid choices: 'none' | 'dots_saveable' | "
                      "'full'"),
    ("scan_layers", "yes", "option 'scan_layers' must be bool, got 'yes'"),
])
def test_bad_values_are_one_line_errors_naming_the_choices(option, value, message):
  with pytest.raises(ValueError) as error:
    models.build("decoder", {option: value})
  assert message in str(error.value) and "\n" not in str(error.value)
  with pytest.raises(ValueError, match="model: unknown remat 'x'; valid choices: none, dots_saveable, full"):
    models.DecoderConfig(remat="x")  # built directly, without the config loader
