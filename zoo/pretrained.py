"""Pretrained models: the checkpoints shipped in `checkpoints/`, and any training workdir, loaded by one call.

  model, config = zoo.pretrained.load("lm_rope")               # a shipped name (see available())
  model, config = zoo.pretrained.load("/tmp/zoo/pi_urpe")      # a workdir: its latest checkpoint
  model, config = zoo.pretrained.load("/tmp/zoo/pi_urpe/checkpoints/400")  # one step of it
  model, config = zoo.pretrained.load("/models/tiny-llama")         # a Hugging Face directory (zoo.convert.hf)
  model, config = zoo.pretrained.load("/tmp/zoo/tiny-llama")        # what `launch.convert --from_hf` wrote
  zoo.pretrained.save(model, config, "/tmp/zoo/mine")               # a folder `load` reads back

Every source gives a config of one shape: `model_name` (the family), `model` (its options, the encoding among them)
and, when the model was trained on one of zoo's tasks, the experiment's `task` and other sections.

Shipped checkpoints are parameters only, one safetensors file per model (an 8-byte header length, a JSON header of
name → dtype, shape and byte range, then the raw little-endian arrays): plain to hash, small, readable without
pickle or orbax, and by other safetensors readers. `checkpoints/manifest.json` holds each model's full config, task,
metric, size, training time, the command that made it and the size and sha256 of every file, which `load` checks
before reading anything. Workdirs are orbax checkpoints plus the `config.json` the training loop writes. A converted
model is a folder of `model.safetensors` (zoo's parameter paths) and a `config.json` with the family and model
options (`{"model_name": ..., "model": {...}}`; no task when it was trained on none of zoo's, the experiment's
sections when `save` wrote a model that was); its own `manifest.json`, written last, holds both files' sizes and
sha256, checked as a shipped model's are.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import struct
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
from flax import nnx

from zoo import models
from zoo.errors import CheckpointError  # noqa: F401 — part of this module's interface
from zoo.models import scan
from zoo.train import param_paths

CHECKPOINTS = pathlib.Path(__file__).resolve().parent.parent / "checkpoints"
MANIFEST = "manifest.json"
CONFIG_FILE = "config.json"  # a workdir's config, written by the training loop
PARAMS_FILE = "model.safetensors"  # a converted model's parameters, next to its config.json
DTYPES = {"F32": np.dtype(np.float32), "BF16": np.dtype(jax.numpy.bfloat16)}


def manifest(root: str | os.PathLike = CHECKPOINTS) -> dict[str, Any]:
  """The shipped models' manifest entries by name ({} when there is no manifest)."""
  path = pathlib.Path(root) / MANIFEST
  return json.loads(path.read_text())["models"] if path.exists() else {}


def available(root: str | os.PathLike = CHECKPOINTS) -> tuple[str, ...]:
  return tuple(sorted(manifest(root)))


def info(name: str, root: str | os.PathLike = CHECKPOINTS) -> dict[str, Any]:
  """The manifest entry of shipped model `name`."""
  entries = manifest(root)
  if name not in entries:
    raise CheckpointError(f"unknown pretrained model {name!r}; available: {', '.join(sorted(entries)) or '(none)'}")
  return entries[name]


def sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def file_entry(path: pathlib.Path) -> dict[str, Any]:
  """A manifest's record of one file: what `verify_files` checks it against."""
  return {"bytes": path.stat().st_size, "sha256": sha256(path)}


def verify_files(label: str, root: pathlib.Path, files: dict[str, dict[str, Any]]) -> None:
  """Checks that every file of a manifest's `files` exists under `root` with its size and sha256; `label` names
  the model in the one-line error."""
  for file, expected in files.items():
    path = root / file
    if not path.is_file():
      raise CheckpointError(f"{label}: file {path} is missing")
    size = path.stat().st_size
    if size != expected["bytes"]:
      raise CheckpointError(f"{label}: file {path} has {size} bytes, the manifest says {expected['bytes']} "
                            f"(damaged or incomplete)")
    digest = sha256(path)
    if digest != expected["sha256"]:
      raise CheckpointError(f"{label}: file {path} is damaged (sha256 {digest[:12]}…, the manifest says "
                            f"{expected['sha256'][:12]}…)")


def verify(name: str, root: str | os.PathLike = CHECKPOINTS) -> None:
  """Checks that every file of shipped model `name` exists with the manifest's size and sha256."""
  verify_files(f"pretrained {name!r}", pathlib.Path(root), info(name, root)["files"])


def write_safetensors(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
  """Writes float32 / bfloat16 arrays in the safetensors layout, sorted by name (so equal arrays → equal bytes)."""
  names = {dtype: code for code, dtype in DTYPES.items()}
  header, offset = {}, 0
  for name in sorted(arrays):
    array = np.asarray(arrays[name], order="C")  # not ascontiguousarray: it turns a scalar's shape () into (1,)
    header[name] = {"dtype": names[array.dtype], "shape": list(array.shape),
                    "data_offsets": [offset, offset + array.nbytes]}
    offset += array.nbytes
  text = json.dumps(header, separators=(",", ":")).encode()
  text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    for name in sorted(arrays):
      f.write(np.asarray(arrays[name], order="C").tobytes())  # little-endian on every host JAX runs on


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """{name: array} as stored (float32 or bfloat16)."""
  data = pathlib.Path(path).read_bytes()
  (size,) = struct.unpack("<Q", data[:8])
  header = json.loads(data[8:8 + size])
  body = memoryview(data)[8 + size:]
  return {name: np.frombuffer(body[begin:end], dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"])
          for name, entry in header.items() if name != "__metadata__"
          for begin, end in [entry["data_offsets"]]}


def write_config(config: Any, workdir: str) -> None:
  """`<workdir>/config.json` (local or remote; process 0 only): what `load`, `launch.evaluate` and
  `launch.generate` rebuild a run from. `config` is a dict or a ConfigDict."""
  from etils import epath  # noqa: PLC0415 — orbax's path library, for gs:// workdirs

  if jax.process_index() != 0:
    return
  config = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
  path = epath.Path(workdir)
  path.mkdir(parents=True, exist_ok=True)
  (path / CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True))


def _workdir_and_step(path: pathlib.Path, step: int | None) -> tuple[pathlib.Path, int | None]:
  """A workdir, its checkpoints/ folder or one step folder in it → (workdir, step or None for the latest)."""
  if path.name.isdigit() and path.parent.name == "checkpoints":
    return path.parent.parent, int(path.name) if step is None else step
  if path.name == "checkpoints":
    return path.parent, step
  return path, step


def _restore_workdir(workdir: pathlib.Path, step: int | None) -> tuple[dict[str, np.ndarray], dict, int]:
  """Parameters of a training workdir's checkpoint on this host, its config and the step: `step`, or the newest
  intact one (a damaged latest step is a warning and the previous one, as when training resumes, but left in place:
  a run may be training in this workdir)."""
  from zoo.train.checkpoint import Checkpointer  # noqa: PLC0415 — orbax is needed only for workdirs
  from zoo.train.mesh import make_mesh  # noqa: PLC0415
  from zoo.train.options import parse_experiment  # noqa: PLC0415
  from zoo.train.step import experiment_program  # noqa: PLC0415

  config = json.loads((workdir / CONFIG_FILE).read_text())
  experiment = parse_experiment(config)
  device = jax.devices()[:1]
  program, _ = experiment_program(experiment, make_mesh(experiment.mesh.shape(1), device))
  checkpointer = Checkpointer(str(workdir / "checkpoints"), max_to_keep=experiment.train.max_to_keep)
  try:
    if step is not None:
      state = checkpointer.restore_step(step, program.abstract_state)
    else:
      step, state = checkpointer.restore_latest(program.abstract_state, set_aside=False) or (None, None)
      if state is None:
        raise CheckpointError(f"workdir {workdir} has no checkpoint")
  finally:
    checkpointer.close()
  return {path: np.asarray(value) for path, value in param_paths.flatten(state.params).items()}, config, step


class Loaded(NamedTuple):
  params: dict[str, np.ndarray]  # path -> float32 array
  config: dict[str, Any]  # model_name, model and, when trained on a zoo task, the rest of its experiment config
  source: str  # where they came from, for messages and reports
  workdir: pathlib.Path | None  # the training workdir (None for a shipped name)
  step: int | None  # its checkpoint's step


def write_converted(path: str | os.PathLike, model_name: str, options: dict[str, Any], params: dict[str, np.ndarray],
                    source: str, experiment: dict[str, Any] | None = None) -> None:
  """A converted model's folder: `model.safetensors`, `config.json` (family, model options, where it came from, and
  the other sections of `experiment`, the config that trained it, when there is one) and `manifest.json` (both
  files' bytes and sha256). The manifest comes last and `load_converted` needs it, so a write that stops midway (a
  full disk, a kill) never reads as a complete model; a failed write removes what it wrote and raises a one-line
  CheckpointError."""
  directory = pathlib.Path(path)
  files = [directory / PARAMS_FILE, directory / CONFIG_FILE, directory / MANIFEST]
  config = dict(experiment or {}, model_name=model_name, model=options, converted_from=source)
  try:
    directory.mkdir(parents=True, exist_ok=True)
    files[2].unlink(missing_ok=True)  # an earlier conversion's: the folder is incomplete until the new one exists
    write_safetensors(files[0], params)
    files[1].write_text(json.dumps(config, indent=1, sort_keys=True))
    files[2].write_text(json.dumps({"files": {file.name: file_entry(file) for file in files[:2]}}, indent=1))
  except OSError as e:
    for file in files:
      with contextlib.suppress(OSError):
        file.unlink(missing_ok=True)
    raise CheckpointError(f"cannot write the converted model to {directory}: {e.strerror or e}") from None


def load_converted(path: pathlib.Path) -> Loaded | None:
  """A Hugging Face directory (converted now) or a folder `write_converted` wrote, its files checked against its
  manifest first; None for anything else."""
  from zoo.convert import hf  # noqa: PLC0415 — safetensors and the architecture tables, only when needed

  if hf.is_hf_directory(path):
    model_name, options, params = hf.read(path)
    return Loaded(params, dict(model_name=model_name, model=options), f"Hugging Face {path}", None, None)
  if _is_converted(path):
    if not (path / MANIFEST).is_file():
      raise CheckpointError(f"converted {path}: no {MANIFEST} (it is written last: the conversion did not finish, "
                            f"or predates manifests); convert again")
    files = hf.read_json(path / MANIFEST).get("files")
    if not isinstance(files, dict) or set(files) != {PARAMS_FILE, CONFIG_FILE}:
      raise CheckpointError(f"converted {path}: {MANIFEST} must list exactly {PARAMS_FILE} and {CONFIG_FILE}")
    verify_files(f"converted {path}", path, files)
    params = {name: value.astype(np.float32) for name, value in read_safetensors(path / PARAMS_FILE).items()}
    return Loaded(params, _converted_config(path), f"converted {path}", None, None)
  return None


def _is_converted(path: pathlib.Path) -> bool:
  return (path / PARAMS_FILE).is_file() and (path / CONFIG_FILE).is_file()


def _converted_config(path: pathlib.Path) -> dict[str, Any]:
  """A converted folder's config as `load` returns it (where it came from is for people reading the file)."""
  return {k: v for k, v in json.loads((path / CONFIG_FILE).read_text()).items() if k != "converted_from"}


def _with_family(config: dict[str, Any]) -> dict[str, Any]:
  """An experiment config with `model_name`, the family its task trains: the shape every source's config has."""
  from zoo.train.options import task_of  # noqa: PLC0415 — the task registry is only needed here

  return {**config, "model_name": task_of(config).family}


def _unknown_source(source: str, root: str | os.PathLike) -> CheckpointError:
  names = ", ".join(available(root)) or "(none)"
  return CheckpointError(f"{source!r} is neither a pretrained name (available: {names}) nor a workdir with a "
                         f"{CONFIG_FILE} (or a checkpoint folder inside one)")


def load_config(source: str, *, root: str | os.PathLike = CHECKPOINTS) -> dict[str, Any]:
  """The config `load_params(source)` gives, without reading or checking any parameter: what a fine-tune of `source`
  inherits (`zoo.train.init_from.fine_tune_config`), cheap enough to ask before anything is built."""
  from zoo.convert import hf  # noqa: PLC0415 — the architecture tables, only when needed
  from zoo.convert.architectures import architecture  # noqa: PLC0415

  if source in manifest(root):
    return _with_family(info(source, root)["config"])
  path = pathlib.Path(source).expanduser().resolve()
  if hf.is_hf_directory(path):
    config = hf.read_json(path / CONFIG_FILE)
    return dict(model_name=architecture(config).family, model=architecture(config).options(config))
  if _is_converted(path):
    return _converted_config(path)
  workdir, _ = _workdir_and_step(path, None)
  if not (workdir / CONFIG_FILE).is_file():
    raise _unknown_source(source, root)
  return _with_family(json.loads((workdir / CONFIG_FILE).read_text()))


def load_params(source: str, step: int | None = None, *, root: str | os.PathLike = CHECKPOINTS) -> Loaded:
  """The parameters and config of a shipped name, a workdir (latest checkpoint or `step`) or a checkpoint folder
  in one, a Hugging Face directory or a converted one; a shipped model's file sizes and sha256 are checked first."""
  if source in manifest(root):
    if step is not None:
      raise CheckpointError(f"pretrained {source!r} is a single checkpoint; a step cannot be chosen")
    entry = info(source, root)
    verify(source, root)
    arrays = {}
    for file in entry["files"]:
      arrays.update(read_safetensors(pathlib.Path(root) / file))
    return Loaded({path: value.astype(np.float32) for path, value in arrays.items()}, _with_family(entry["config"]),
                  f"pretrained {source!r}", None, None)
  converted = load_converted(pathlib.Path(source).expanduser().resolve())
  if converted is not None:
    if step is not None:
      raise CheckpointError(f"{converted.source} is a single checkpoint; a step cannot be chosen")
    return converted
  workdir, step = _workdir_and_step(pathlib.Path(source).expanduser().resolve(), step)
  if not (workdir / CONFIG_FILE).is_file():
    raise _unknown_source(source, root)
  params, config, step = _restore_workdir(workdir, step)
  return Loaded(params, _with_family(config), f"{workdir} step {step}", workdir, step)


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
