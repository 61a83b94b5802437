"""Shipped checkpoints, fine-tuning from them, and the evaluate / generate commands, as a user runs them."""

import json
import math
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from conftest import FIXTURES, REPO, cli_env

from launch import make_pretrained
from zoo import models, pretrained
from zoo.models.config import nest
from zoo.checkpoints import tensors
from zoo.convert import hf
from zoo.train import init_from, loop
from zoo.train.mesh import make_mesh
from zoo.train.options import OptimizerOptions, parse_experiment
from zoo.train.param_paths import PathPatternError, flatten, frozen, learning_rate_factor, trainable_only
from zoo.train.step import experiment_program

HF = FIXTURES / "hf"
NAMES = pretrained.available()
METRIC_TOLERANCE = 1e-4  # relative; the same code on the same data reproduces it exactly on one machine


def run_command(module: str, *args, data_dir: str, timeout: float = 300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env={**cli_env(), "ZOO_DATA_DIR": data_dir},
                        capture_output=True, text=True, timeout=timeout)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
  return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_the_suite_covers_every_encoding_a_decoder_builds_with():
  decoder_encodings = {pretrained.info(n)["encoding"] for n in NAMES if pretrained.info(n)["family"] == "decoder"}
  assert {name.removeprefix("lm_").removesuffix("_linear") for name in make_pretrained.suite()
          if name.startswith("lm_")} == decoder_encodings
  assert set(make_pretrained.suite()) == set(NAMES)
  assert sum(f.stat().st_size for f in pretrained.CHECKPOINTS.iterdir()) < 20e6


@pytest.mark.parametrize("name", NAMES)
def test_every_shipped_name_verifies_and_loads(name):
  model, config = pretrained.load(name)
  entry = pretrained.info(name)
  assert sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))) == entry["parameters"]
  # The manifest stores the config as trained — the older entries before the model's sections, newer ones in them —
  # and each loads in today's shape.
  stored = entry["config"]
  assert config.to_dict() == {**stored, "model": nest(stored["model"]), "model_name": entry["family"]}


@pytest.mark.parametrize("source", ["lm_rope", "hf", "converted"])
def test_every_source_loads_a_config_of_one_shape(source, tmp_path):
  if source == "converted":
    pretrained.write_converted(tmp_path, *hf.read(HF / "llama"), source=str(HF / "llama"))
  path = {"lm_rope": "lm_rope", "hf": str(HF / "llama"), "converted": str(tmp_path)}[source]
  _, config = pretrained.load(path)
  assert (config.model_name, config.model.positional.name) == ("decoder", "rope")
  assert ("task" in config) == (source == "lm_rope")
  assert pretrained.load_config(path) == config.to_dict()  # the same without reading a parameter


@pytest.mark.parametrize("source", ["lm_rope", "hf"])
def test_save_writes_what_load_reads_back_as_the_same_model(source, tmp_path):
  model, config = pretrained.load(source if source == "lm_rope" else str(HF / "llama"))
  pretrained.save(model, config, tmp_path / "saved")
  again, config_again = pretrained.load(str(tmp_path / "saved"))
  assert config_again.to_dict() == config.to_dict()
  tokens = jnp.asarray([[3, 1, 4, 1, 5, 9, 2, 6]], jnp.int32)
  np.testing.assert_array_equal(np.asarray(again(tokens)), np.asarray(model(tokens)))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_damaged_shipped_file_is_a_one_line_error_naming_it(tmp_path, damage):
  name = "pi_urpe"
  shutil.copy(pretrained.CHECKPOINTS / pretrained.MANIFEST, tmp_path)
  (file,) = pretrained.info(name)["files"]
  shutil.copy(pretrained.CHECKPOINTS / file, tmp_path)
  path = tmp_path / file
  data = bytearray(path.read_bytes())
  if damage == "flip":
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
  elif damage == "truncate":
    path.write_bytes(bytes(data[:-1]))
  else:
    path.unlink()
  with pytest.raises(pretrained.CheckpointError) as error:
    pretrained.load(name, root=tmp_path)
  message = str(error.value)
  assert "\n" not in message and str(path) in message
  assert {"flip": "damaged (sha256", "truncate": "bytes, the manifest says", "delete": "is missing"}[damage] in message


def test_safetensors_round_trip_keeps_float32_exactly_and_bfloat16_as_stored(tmp_path):
  arrays = {"a/kernel": np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32),
            "b": np.arange(7, dtype=np.float32).astype(jnp.bfloat16),
            "c/scalar": np.float32(0.5) * np.ones((), np.float32)}  # FIRE's c: a shape-() parameter
  tensors.write(tmp_path / "x.safetensors", arrays)
  back = tensors.read(tmp_path / "x.safetensors")
  assert back.keys() == arrays.keys()
  for name, array in arrays.items():
    assert back[name].dtype == array.dtype and back[name].shape == array.shape and np.array_equal(back[name], array)


@pytest.mark.parametrize("name", [pytest.param("lm_rope", marks=pytest.mark.slow), "lm_alibi"])  # one data set
def test_evaluate_reproduces_the_manifest_metric(name, data_dir):
  result = run_command("launch.evaluate", f"--pretrained={name}", data_dir=data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  line = json.loads(result.stdout.strip().splitlines()[-1])
  metric = pretrained.info(name)["metric"]
  assert math.isclose(line[metric["name"]], metric["value"], rel_tol=METRIC_TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_evaluate_reproduces_every_manifest_metric(name, data_dir):
  test_evaluate_reproduces_the_manifest_metric(name, data_dir)


def finetune_config(file: str, data_dir: str, **train) -> dict:
  from configs import finetune_lm_long, finetune_lm_rope_to_urpe, finetune_pi_to_etp  # noqa: PLC0415

  module = {"pi_to_etp": finetune_pi_to_etp, "rope_to_urpe": finetune_lm_rope_to_urpe,
            "long": finetune_lm_long}[file]
  config = module.get_config("smoke").to_dict()
  config["train"].update(data_dir=data_dir, progress_bar=False, **train)
  return config


def test_init_from_loads_the_checkpoint_at_step_0_with_a_fresh_head_and_optimizer(tmp_path, data_dir):
  experiment = parse_experiment(init_from.fine_tune_config(finetune_config("pi_to_etp", data_dir)))
  program, init = experiment_program(experiment, make_mesh((1, 1, 1), jax.devices()[:1]))
  fresh = {p: np.asarray(v) for p, v in flatten(init().params).items()}
  state = init_from.warm_start(init(), experiment.train, str(tmp_path))
  params = {p: np.asarray(v) for p, v in flatten(state.params).items()}
  shipped = pretrained.load_params("pi_urpe").params
  report = json.loads((tmp_path / init_from.REPORT_FILE).read_text())
  assert sorted(report["mismatched"]) == ["head/bias", "head/kernel"] and not report["new"] and not report["dropped"]
  assert report["loaded"] == sorted(set(params) - {"head/bias", "head/kernel"})
  for path in report["loaded"]:
    assert np.array_equal(params[path], shipped[path]), path
  for path in report["mismatched"]:
    assert np.array_equal(params[path], fresh[path]), path
  assert int(state.step) == 0
  assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(state.opt_state))  # count, moments: all zero


@pytest.mark.slow
def test_a_head_of_another_shape_without_the_allowance_is_a_one_line_error(tmp_path, data_dir):
  result = run_command("launch.train", "--config=configs/finetune_pi_to_etp.py:smoke",
                       "--config.train.init_from_allow_mismatch=False", f"--workdir={tmp_path}", data_dir=data_dir)
  assert result.returncode == 2, result.stderr[-3000:]
  (line,) = error_lines(result)
  assert "head/bias [64] vs [101]" in line and "head/kernel [64, 101]" not in line and "head/kernel" in line
  assert "init_from_allow_mismatch" in line and "Traceback" not in result.stderr


def test_fine_tuning_with_a_swapped_encoding_keeps_frozen_parameters_bit_unchanged(tmp_path, data_dir, capsys):
  workdir = tmp_path / "run"
  loop.train_and_evaluate(finetune_config("rope_to_urpe", data_dir), str(workdir), devices=jax.devices()[:1])
  printed = capsys.readouterr().out
  assert "train.init_from 'lm_rope' (pretrained 'lm_rope'): loaded" in printed
  report = json.loads((workdir / init_from.REPORT_FILE).read_text())
  assert report["new"] and all("/encoding/" in p for p in report["new"]) and not report["mismatched"]
  shipped = pretrained.load_params("lm_rope").params
  trained = pretrained.load_params(str(workdir))
  recorded = json.loads((workdir / "config.json").read_text())
  assert trained.step == 4 and recorded["train"]["init_from"] == "lm_rope"
  shipped_model = nest(pretrained.info("lm_rope")["config"]["model"])  # stored before the sections: read in them
  # The encoding is the file's, the rest lm_rope's, stated in full.
  assert recorded["model"] == {**shipped_model, "positional": {"name": "urpe", "options": {}}}
  assert set(trained.params) - set(shipped) == set(report["new"])
  # train.trainable="encoding": everything else is frozen, listed as such, and stays the shipped parameters.
  assert report["frozen"] == sorted(shipped) and set(report["frozen"]).isdisjoint(report["new"])
  assert f"  frozen (not in train.trainable): {', '.join(sorted(shipped))}" in printed
  for path, value in shipped.items():
    assert np.array_equal(trained.params[path], value), path


@pytest.mark.slow
def test_fine_tuning_at_four_times_the_length_then_resume_then_evaluate_the_workdir(tmp_path, data_dir):
  result = run_command("launch.train", "--config=configs/finetune_lm_long.py:smoke", f"--workdir={tmp_path}",
                       data_dir=data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "train.init_from 'lm_rope' (pretrained 'lm_rope'): loaded" in result.stdout
  report = json.loads((tmp_path / init_from.REPORT_FILE).read_text())
  assert not (report["new"] or report["dropped"] or report["mismatched"])
  assert json.loads((tmp_path / "config.json").read_text())["task"]["length"] == 4 * 128
  # The workdir now has a checkpoint: running on resumes from it (step 3), init_from is not applied again.
  result = run_command("launch.train", "--config=configs/finetune_lm_long.py:smoke", "--config.train.steps=4",
                       f"--workdir={tmp_path}", data_dir=data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "init_from" not in result.stdout and pretrained.load_params(str(tmp_path)).step == 4
  # The workdir alone is enough to evaluate it; the metrics land in its metrics.jsonl.
  result = run_command("launch.evaluate", f"--workdir={tmp_path}", data_dir=data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
  assert last["step"] == 4 and last["evaluate"] == {"task": "byte_lm", "length": 512}
  assert math.isfinite(last["eval_loss"])


ROPE_500 = {"name": "rope", "options": {"base": 500.0}}  # tests/fixtures/hf/llama's encoding


@pytest.mark.parametrize("stated,expected", [
    ({}, {"positional": ROPE_500}),  # nothing stated: the checkpoint's model, in full
    (dict(positional={"name": "rope"}), {"positional": ROPE_500}),  # its own encoding: its options stay
    (dict(positional={"name": "rope", "options": {"scaling": "linear", "factor": 2.0}}),  # over the checkpoint's
     {"positional": {"name": "rope", "options": {"base": 500.0, "scaling": "linear", "factor": 2.0}}}),
    (dict(positional={"options": {"base": 10000.0}}), {"positional": {"name": "rope", "options": {"base": 10000.0}}}),
    (dict(positional={"name": "alibi"}), {"positional": {"name": "alibi", "options": {}}}),  # RoPE's would not apply
    (dict(positional={"name": "urpe"}, attention={"num_kv_heads": 4}),  # a section merges key by key
     {"positional": {"name": "urpe", "options": {}}, "attention": {"num_kv_heads": 4}}),
])
def test_a_fine_tune_config_keeps_every_option_its_checkpoint_states_unless_stated(stated, expected):
  from configs import lm_bytes  # noqa: PLC0415

  config = lm_bytes.get_config("smoke").to_dict()
  config["model"] = stated
  config["train"]["init_from"] = str(HF / "llama")
  model = init_from.fine_tune_config(config)["model"]
  checkpoint = pretrained.load_config(str(HF / "llama"))["model"]
  base = {k: v for k, v in checkpoint.items() if k not in ("vocab_size", "max_length")}
  assert model == {**base, **{name: {**base[name], **section} for name, section in expected.items()}}
  assert init_from.fine_tune_config(init_from.fine_tune_config(config))["model"] == model
  parse_experiment(init_from.fine_tune_config(config))  # a valid experiment: the task sets vocabulary and length


def test_frozen_lists_what_the_trainable_regex_leaves_out():
  paths = ["embed/table", "backbone/blocks/0/attention/encoding/c", "head/kernel"]
  assert frozen(paths, "") == []
  assert frozen(paths, "encoding|head") == ["embed/table"]


def test_a_trainable_regex_that_matches_nothing_is_an_error():
  params = {"embed": {"table": jnp.ones((2, 2))}}
  tx = trainable_only(optax.sgd(0.1), "positional")
  with pytest.raises(PathPatternError, match="matches no parameter path"):
    tx.update(params, tx.init(params), params)


def test_lr_factor_scales_the_matched_parameters_updates_only():
  """Against optax's own adamw: the matched leaf's update is factor × adamw's, the others are adamw's; a regex that
  matches nothing, or a factor <= 0, is a one-line error."""
  params = {"attention": {"log_p": jnp.array([0.1, -0.3])}, "head": {"kernel": jnp.array([[1.0, 2.0]])}}
  grads = jax.tree.map(lambda p: 0.5 - p, params)
  plain = optax.adamw(0.01, weight_decay=0.1)
  tx = learning_rate_factor(plain, "log_p", 0.25)
  state, reference_state = tx.init(params), plain.init(params)
  for _ in range(3):  # the moments evolve the same: only the update is scaled
    updates, state = tx.update(grads, state, params)
    reference, reference_state = plain.update(grads, reference_state, params)
  np.testing.assert_allclose(updates["attention"]["log_p"], 0.25 * reference["attention"]["log_p"], rtol=1e-6)
  np.testing.assert_array_equal(updates["head"]["kernel"], reference["head"]["kernel"])
  with pytest.raises(PathPatternError, match="optimizer.lr_factor_params 'decay' matches no parameter path"):
    learning_rate_factor(plain, "decay", 0.25).update(grads, state, params)
  with pytest.raises(ValueError, match="optimizer: lr_factor must be > 0, got 0.0"):
    OptimizerOptions(lr_factor=0.0)


def test_generate_streams_the_greedy_continuation_of_models_generate(data_dir):
  prompt, new = "import os\ndef ", 32
  result = run_command("launch.generate", "--pretrained=lm_rope", f"--prompt={prompt}", f"--max_new_tokens={new}",
                       data_dir=data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  model, _ = pretrained.load("lm_rope")
  tokens = models.generate(model, jnp.asarray([list(prompt.encode())], jnp.int32), max_new_tokens=new,
                           rng=jax.random.key(0))
  assert result.stdout == bytes(np.asarray(tokens[0]).tolist()).decode("utf-8", "replace") + "\n"


def test_the_docs_table_is_the_manifest():
  assert make_pretrained.table(pretrained.manifest()) in make_pretrained.TABLE_PAGE.read_text()


def test_an_unknown_source_names_the_shipped_models(tmp_path):
  with pytest.raises(pretrained.CheckpointError, match=r"is neither a pretrained name \(available: .*lm_rope"):
    pretrained.load_params(str(tmp_path / "nope"))
