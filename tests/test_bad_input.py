"""Every command's bad input, run through the real command line: one `error:` line on stderr and exit status 2, never a
traceback; and every reader of a workdir falls back from a damaged latest checkpoint as `launch.train` does."""

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FIXTURES, default_or_slow
from safetensors import numpy as safetensors_numpy
from test_pretrained import run_command

from zoo import models, pretrained

HF = FIXTURES / "hf"
DECODER = ("--config=configs/lm_bytes.py:rope,smoke", "--config.model.scale_embeddings=false")  # exports as llama
SMOKE = "--config=configs/pi.py:urpe,smoke"
# tensorflow_datasets warns once per run of a task whose builder config is not a registered one (every zoo task);
# it says nothing about the input.
BENIGN = "] Using custom data configuration: "


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
  return [line for line in result.stderr.splitlines() if line.strip() and BENIGN not in line]


class Setup(NamedTuple):
  """What the rows' setup functions build on: the shared fixtures and a folder of the row's own."""

  trained: str  # a decoder workdir with intact checkpoints of steps 3 and 6
  damaged: str  # a copy whose latest step (6) has one flipped bit
  data_dir: str
  tmp: str
  mount: Callable[[str, str], str]  # (folder, size) -> a tmpfs of that size mounted there (skips when impossible)


def flip_a_bit(step_dir: str) -> None:
  """Flips one bit in the middle of the state's array data file (orbax's OCDBT store under state/d/)."""
  (name,) = os.listdir(os.path.join(step_dir, "state", "d"))
  path = os.path.join(step_dir, "state", "d", name)
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0x10
  open(path, "wb").write(bytes(data))


def hf_copy(setup: Setup, name: str = "llama") -> str:
  return shutil.copytree(HF / name, os.path.join(setup.tmp, f"hf_{name}"))


def truncated_safetensors(setup: Setup) -> str:
  directory = hf_copy(setup)
  path = os.path.join(directory, "model.safetensors")
  os.truncate(path, os.path.getsize(path) // 2)
  return directory


def invalid_config(setup: Setup) -> str:
  directory = hf_copy(setup)
  with open(os.path.join(directory, "config.json"), "w") as f:
    f.write('{"model_type": "llama",')
  return directory


def index_naming(shard: Callable[[str], str]) -> Callable[[Setup], str]:
  """A Hugging Face directory whose index names the shard `shard(tmp)`: an intact safetensors file outside it."""
  def make(setup: Setup) -> str:
    outside = hf_copy(setup)
    directory = os.path.join(setup.tmp, "indexed")
    os.makedirs(directory)
    shutil.copy(os.path.join(outside, "config.json"), directory)
    names = safetensors_numpy.load_file(os.path.join(outside, "model.safetensors"))
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
      json.dump({"weight_map": dict.fromkeys(names, shard(setup.tmp))}, f)
    return directory
  return make


def wrong_shape(setup: Setup) -> str:
  directory = hf_copy(setup)
  path = os.path.join(directory, "model.safetensors")
  tensors = safetensors_numpy.load_file(path)
  tensors["model.norm.weight"] = np.ones(17, np.float32)  # d_model is 16
  safetensors_numpy.save_file(tensors, path, metadata={"format": "pt"})
  return directory


def converted(setup: Setup) -> str:
  out = os.path.join(setup.tmp, "converted")
  result = run_command("launch.convert", f"--from_hf={HF / 'llama'}", f"--out={out}", data_dir=setup.data_dir)
  assert result.returncode == 0, result.stderr[-2000:]
  return out


def converted_with_a_flipped_byte(setup: Setup) -> str:
  out = converted(setup)
  path = os.path.join(out, "model.safetensors")
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0x01
  open(path, "wb").write(bytes(data))
  return out


def every_step_damaged(setup: Setup) -> str:
  workdir = shutil.copytree(setup.damaged, os.path.join(setup.tmp, "all_damaged"))
  flip_a_bit(os.path.join(workdir, "checkpoints", "3"))
  return workdir


def no_checkpoint_left(path: str) -> None:
  """Nothing half-written left: no checkpoint step (not even orbax's temporary one), no model file."""
  if os.path.isdir(os.path.join(path, "checkpoints")):
    assert not os.listdir(os.path.join(path, "checkpoints")), os.listdir(os.path.join(path, "checkpoints"))
  else:
    assert not os.path.exists(path) or not os.listdir(path), os.listdir(path)


class Row(NamedTuple):
  module: str
  args: Callable[[Setup], list[str]]
  message: str  # the start of the error line after "error: " (or a part of it, with a leading "…")
  after: Callable[[Setup], None] | None = None  # checks what the command left behind


ROWS = {
    "negative mlp dim": Row("launch.train", lambda s: [SMOKE, "--config.model.mlp.dim=-4", f"--workdir={s.tmp}/w"],
                            "model.mlp: dim must be None (derived), 0 (no feed-forward layer) or >= 1, got -4"),
    "negative head_dim": Row("launch.train", lambda s: [SMOKE, "--config.model.attention.head_dim=-1",
                                                        f"--workdir={s.tmp}/w"],
                             "model.attention: head_dim must be None (derived) or >= 1, got -1"),
    "zero head_dim": Row("launch.train", lambda s: [SMOKE, "--config.model.attention.head_dim=0",
                                                    f"--workdir={s.tmp}/w"],
                         "model.attention: head_dim must be None (derived) or >= 1, got 0"),
    "negative max_new_tokens": Row("launch.generate", lambda s: ["--pretrained=lm_rope", "--prompt=a",
                                                                 "--max_new_tokens=-3"],
                                   "flag --max_new_tokens=-3: -3 is not a positive integer"),
    "zero max_new_tokens": Row("launch.generate", lambda s: ["--pretrained=lm_rope", "--prompt=a",
                                                             "--max_new_tokens=0"],
                               "flag --max_new_tokens=0: 0 is not a positive integer"),
    "generate: Hugging Face encoder": Row("launch.generate", lambda s: [f"--workdir={HF / 'bert'}", "--prompt=1 2"],
                                          "…is of family 'encoder'; generate needs a decoder"),
    "generate: text prompt to a converted folder": Row(
        "launch.generate", lambda s: [f"--workdir={converted(s)}", "--prompt=hello"],
        "this model reads token ids, not text: give the prompt as space-separated token ids"),
    "truncated safetensors": Row("launch.convert", lambda s: [f"--from_hf={truncated_safetensors(s)}",
                                                              f"--out={s.tmp}/out"],
                                 "…model.safetensors: not a readable safetensors file (",
                                 lambda s: no_checkpoint_left(f"{s.tmp}/out")),
    "invalid config.json": Row("launch.convert", lambda s: [f"--from_hf={invalid_config(s)}", f"--out={s.tmp}/out"],
                               "…config.json: not a readable JSON file (",
                               lambda s: no_checkpoint_left(f"{s.tmp}/out")),
    "generate: invalid config.json": Row("launch.generate", lambda s: [f"--workdir={invalid_config(s)}", "--prompt=1"],
                                         "…config.json: not a readable JSON file ("),
    "index naming ../": Row(
        "launch.convert", lambda s: [f"--from_hf={index_naming(lambda t: '../hf_llama/model.safetensors')(s)}",
                                     f"--out={s.tmp}/out"],
        "…model.safetensors.index.json: shard '../hf_llama/model.safetensors' is not a file name in the directory",
        lambda s: no_checkpoint_left(f"{s.tmp}/out")),
    "index naming an absolute path": Row(
        "launch.evaluate", lambda s: [f"--workdir={index_naming(lambda t: f'{t}/hf_llama/model.safetensors')(s)}"],
        "…model.safetensors.index.json: shard '/"),
    "tensor of the wrong shape": Row("launch.convert", lambda s: [f"--from_hf={wrong_shape(s)}", f"--out={s.tmp}/out"],
                                     "…: tensor of the wrong shape: model.norm.weight (17,) gives "
                                     "backbone/final_norm/scale shape (17,), the config's model has (16,)",
                                     lambda s: no_checkpoint_left(f"{s.tmp}/out")),
    "converted folder with a flipped byte": Row(
        "launch.generate", lambda s: [f"--workdir={converted_with_a_flipped_byte(s)}", "--prompt=1 2"],
        "converted "),
    "damaged explicit --step": Row("launch.evaluate", lambda s: [f"--workdir={s.damaged}", "--step=6"],
                                   "checkpoint step 6 in "),
    "missing --step": Row("launch.convert", lambda s: [f"--workdir={s.trained}", "--step=5", f"--to_hf={s.tmp}/hf"],
                          "…has no checkpoint of step 5; steps: 3, 6"),
    "no intact checkpoint": Row("launch.generate", lambda s: [f"--workdir={every_step_damaged(s)}", "--prompt=a"],
                                "no intact checkpoint in "),
    "disk full: convert --out": Row(
        "launch.convert", lambda s: [f"--from_hf={HF / 'llama'}", f"--out={s.mount('disk', '32k')}/out"],
        "cannot write the converted model to ", lambda s: no_checkpoint_left(f"{s.tmp}/disk/out")),
    "disk full: convert --to_hf": Row(
        "launch.convert", lambda s: [f"--workdir={HF / 'llama'}", f"--to_hf={s.mount('disk', '32k')}/hf"],
        "cannot write the Hugging Face model to ", lambda s: no_checkpoint_left(f"{s.tmp}/disk/hf")),
    "disk full: train checkpoint": Row(
        "launch.train", lambda s: [*DECODER, f"--config.train.data_dir={s.data_dir}", "--config.train.steps=3",
                                   "--config.train.progress_bar=false", f"--workdir={s.mount('disk', '96k')}/w"],
        "saving a checkpoint in ", lambda s: no_checkpoint_left(f"{s.tmp}/disk/w")),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir) -> str:
  workdir = str(tmp_path_factory.mktemp("trained"))
  result = run_command("launch.train", *DECODER, "--config.train.max_to_keep=10", f"--config.train.data_dir={data_dir}",
                       "--config.train.progress_bar=false", f"--workdir={workdir}", data_dir=data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
  return workdir


@pytest.fixture(scope="module")
def damaged(trained, tmp_path_factory) -> str:
  workdir = shutil.copytree(trained, tmp_path_factory.mktemp("damaged") / "workdir")
  flip_a_bit(os.path.join(workdir, "checkpoints", "6"))
  return str(workdir)


@pytest.fixture
def setup(trained, damaged, data_dir, tmp_path):
  with contextlib.ExitStack() as mounts:
    def mount(name: str, size: str) -> str:
      folder = tmp_path / name
      folder.mkdir()
      result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
      if result.returncode != 0:
        pytest.skip(f"a full disk is simulated by a small tmpfs, which this machine cannot mount: "
                    f"{result.stderr.strip() or 'not root'}")
      mounts.callback(subprocess.run, ["umount", str(folder)], check=True)
      return str(folder)

    yield Setup(trained, damaged, data_dir, str(tmp_path), mount)


# The default suite runs one row per command (and one full disk); the slow suite all of them.
DEFAULT_ROWS = ("negative mlp dim", "zero max_new_tokens", "truncated safetensors", "index naming an absolute path",
                "disk full: train checkpoint")


@pytest.mark.parametrize("case", default_or_slow(ROWS, DEFAULT_ROWS))
def test_bad_input_is_one_error_line_and_exit_2(case, setup):
  row = ROWS[case]
  result = run_command(row.module, *row.args(setup), data_dir=setup.data_dir)
  assert result.returncode == 2, result.stderr[-3000:]
  lines = stderr_lines(result)
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
  text = lines[0].removeprefix("error: ")
  assert (row.message[1:] in text) if row.message.startswith("…") else text.startswith(row.message), text
  if row.after is not None:
    row.after(setup)


FALLBACK_READERS = {
    "evaluate": ("launch.evaluate", lambda s: [f"--workdir={s.damaged}"], '"source": "{damaged} step 3"'),
    "generate": ("launch.generate", lambda s: [f"--workdir={s.damaged}", "--prompt=a", "--max_new_tokens=2"], ""),
    "convert": ("launch.convert", lambda s: [f"--workdir={s.damaged}", f"--to_hf={s.tmp}/hf"], "wrote "),
    "init_from": ("launch.train", lambda s: [*DECODER, f"--config.train.init_from={s.damaged}",
                                             "--config.train.steps=1", f"--config.train.data_dir={s.data_dir}",
                                             "--config.train.progress_bar=false", f"--workdir={s.tmp}/w"],
                  "({damaged} step 3): loaded 11 parameter(s)"),
}


@pytest.mark.parametrize("reader", default_or_slow(FALLBACK_READERS, ("evaluate",)))
def test_readers_fall_back_from_a_bit_flipped_latest_checkpoint_and_leave_it_in_place(reader, setup):
  module, args, expected = FALLBACK_READERS[reader]
  result = run_command(module, *args(setup), data_dir=setup.data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = stderr_lines(result)  # the one warning, no TensorStore or asyncio stragglers around it
  assert len(lines) == 1 and lines[0].startswith("warning: checkpoint step 6 is damaged ("), result.stderr[-3000:]
  assert lines[0].endswith("); trying the previous step") and "moved" not in lines[0]
  assert expected.format(damaged=setup.damaged) in result.stdout
  assert sorted(os.listdir(os.path.join(setup.damaged, "checkpoints"))) == ["3", "6"]  # another run may own it
  assert not os.path.exists(os.path.join(setup.damaged, "damaged_checkpoints"))


def test_generate_continues_token_ids_with_a_hugging_face_directory_as_models_generate_does(data_dir):
  prompt, new = [5, 17, 3], 6
  result = run_command("launch.generate", f"--workdir={HF / 'llama'}", f"--prompt={' '.join(map(str, prompt))}",
                       f"--max_new_tokens={new}", data_dir=data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  model, _ = pretrained.load(str(HF / "llama"))
  tokens = models.generate(model, jnp.asarray([prompt], jnp.int32), max_new_tokens=new, rng=jax.random.key(0))
  assert result.stdout.split() == [str(t) for t in np.asarray(tokens[0])]


def test_a_converted_folder_has_a_manifest_of_its_files(tmp_path, data_dir):
  out = tmp_path / "out"
  result = run_command("launch.convert", f"--from_hf={HF / 'gpt2'}", f"--out={out}", data_dir=data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  files = json.loads((out / "manifest.json").read_text())["files"]
  assert files == {name: {"bytes": (out / name).stat().st_size, "sha256": pretrained.sha256(out / name)}
                   for name in ("model.safetensors", "config.json")}
  (out / "manifest.json").unlink()  # as a conversion that stopped before its last write leaves it
  with pytest.raises(pretrained.CheckpointError, match="no manifest.json"):
    pretrained.load(str(out))
