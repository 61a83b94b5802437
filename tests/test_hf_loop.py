"""The Hugging Face loop through the real command lines: an imported model runs through generate and evaluate, and
a fine-tune of it keeps what its checkpoint says all the way back to a Hugging Face config.json."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FIXTURES
from test_pretrained import error_lines, run_command

from zoo import models, pretrained

HF = FIXTURES / "hf"
TASK = "--task=configs/lm_bytes.py:smoke"  # byte-level LM: the tiny Llama's 256-token vocabulary fits it


@pytest.fixture(scope="module")
def converted(tmp_path_factory, data_dir) -> str:
  """The tiny Llama as `launch.convert --from_hf --out` writes it."""
  out = tmp_path_factory.mktemp("converted") / "llama"
  result = run_command("launch.convert", f"--from_hf={HF / 'llama'}", f"--out={out}", data_dir=data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  return str(out)


@pytest.mark.parametrize("flag", [pytest.param("--workdir", marks=pytest.mark.slow), "--pretrained"])
def test_generate_on_a_converted_folder_continues_as_models_generate_does(converted, flag, data_dir):
  prompt, new = [1, 2, 3], 5
  result = run_command("launch.generate", f"{flag}={converted}", f"--prompt={' '.join(map(str, prompt))}",
                       f"--max_new_tokens={new}", data_dir=data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  model, config = pretrained.load(str(HF / "llama"))  # the directory itself: conversion changed nothing
  tokens = models.generate(model, jnp.asarray([prompt], jnp.int32), max_new_tokens=new, rng=jax.random.key(0))
  assert result.stdout.split() == [str(t) for t in np.asarray(tokens[0])]


@pytest.mark.parametrize("source", ["converted", pytest.param("hf", marks=pytest.mark.slow)])
def test_evaluate_asks_for_a_task_then_runs_on_it(converted, source, data_dir):
  path = converted if source == "converted" else str(HF / "llama")
  result = run_command("launch.evaluate", f"--workdir={path}", data_dir=data_dir)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  (line,) = error_lines(result)
  assert "has no zoo task to evaluate on" in line and "give --task=configs/" in line, line
  result = run_command("launch.evaluate", f"--workdir={path}", TASK, data_dir=data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads(result.stdout.strip().splitlines()[-1])
  assert (metrics["task"], metrics["length"]) == ("byte_lm", 32)
  assert metrics["source"] == ("converted " if source == "converted" else "Hugging Face ") + path
  assert np.isfinite(metrics["eval_loss"]) and metrics["eval_loss"] > 0


def test_evaluate_refuses_a_task_of_another_family_in_one_line(converted, data_dir):
  result = run_command("launch.evaluate", f"--workdir={converted}", "--task=configs/pi.py:urpe,smoke",
                       data_dir=data_dir)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert error_lines(result) == [f"error: converted {converted} is of family 'decoder'; --task's task "
                                 f"'position_identification' trains family 'encoder'"]


def test_a_rope_fine_tune_of_a_llama_keeps_its_rope_theta_back_to_hugging_face(tmp_path, data_dir):
  llama = shutil.copytree(HF / "llama", tmp_path / "llama")
  config = json.loads((llama / "config.json").read_text())
  config["rope_parameters"]["rope_theta"] = 500000.0  # only the rotary frequencies change; the weights stay valid
  (llama / "config.json").write_text(json.dumps(config))
  workdir, out = tmp_path / "run", tmp_path / "hf"
  result = run_command("launch.train", f"--config=configs/finetune_hf_swap.py:{llama},smoke",
                       "--config.model.positional.name=rope", "--config.train.steps=2",
                       "--config.train.progress_bar=False",
                       f"--workdir={workdir}", data_dir=data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  recorded = json.loads((workdir / "config.json").read_text())["model"]
  assert recorded["positional"]["options"] == {"base": 500000.0} and recorded["attention"]["num_kv_heads"] == 2
  result = run_command("launch.convert", f"--workdir={workdir}", f"--to_hf={out}", data_dir=data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  exported = json.loads((out / "config.json").read_text())
  assert exported["rope_parameters"]["rope_theta"] == 500000.0
  for key in ("num_key_value_heads", "head_dim", "hidden_size", "intermediate_size", "rms_norm_eps",
              "tie_word_embeddings", "vocab_size"):
    assert exported[key] == config[key], key
