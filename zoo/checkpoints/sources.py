"""Every source of parameters by one dispatch: a shipped name, a folder a reader claims (a Hugging Face directory,
once `zoo.convert.hf` registered its reader), a converted folder, or a training workdir (or a checkpoint folder in
one). `load_config` and `load_params` ask the same `Source`, so the config a fine-tune inherits is always the config
of the parameters it then loads.

A converted model is a folder of `model.safetensors` (zoo's parameter paths) and a `config.json` with the family and
model options (`{"model_name": ..., "model": {...}}`, and the experiment's sections when it was trained on a zoo
task); its own `manifest.json`, written last, holds both files' sizes and sha256, checked as a shipped model's are.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from zoo.checkpoints import tensors, workdir
from zoo.checkpoints.files import all_or_none
from zoo.checkpoints.manifest import (CHECKPOINTS, CONFIG_FILE, MANIFEST, PARAMS_FILE, available, file_entry, info,
                                      manifest, verify, verify_files)
from zoo.errors import CheckpointError


class Loaded(NamedTuple):
  params: dict[str, np.ndarray]  # path -> float32 array
  config: dict[str, Any]  # model_name, model and, when trained on a zoo task, the rest of its experiment config
  source: str  # where they came from, for messages and reports
  workdir: pathlib.Path | None  # the training workdir (None otherwise)
  step: int | None  # its checkpoint's step


@dataclasses.dataclass(frozen=True)
class Reader:
  """A folder format of another library: `claims(path)` recognises one, `config(path)` gives its family and model
  options, `params(path)` its zoo parameters (float32)."""

  label: str
  claims: Callable[[pathlib.Path], bool]
  config: Callable[[pathlib.Path], dict[str, Any]]
  params: Callable[[pathlib.Path], dict[str, np.ndarray]]


READERS: list[Reader] = []  # filled by the modules that know a format (zoo.convert.hf), when they are imported


def register(reader: Reader) -> None:
  if all(r.label != reader.label for r in READERS):
    READERS.append(reader)


def write_converted(path: str | os.PathLike, model_name: str, options: dict[str, Any], params: dict[str, np.ndarray],
                    source: str, experiment: dict[str, Any] | None = None) -> None:
  """A converted model's folder: `model.safetensors`, `config.json` (family, model options, where it came from, and
  the other sections of `experiment`, the config that trained it, when there is one) and `manifest.json` (both
  files' bytes and sha256). The manifest comes last and reading needs it, so a write that stops midway (a full disk,
  a kill) never reads as a complete model; a failed write removes what it wrote and raises a one-line
  CheckpointError."""
  directory = pathlib.Path(path)
  files = [directory / PARAMS_FILE, directory / CONFIG_FILE, directory / MANIFEST]
  config = dict(experiment or {}, model_name=model_name, model=options, converted_from=source)
  with all_or_none(files, f"the converted model to {directory}", CheckpointError):
    directory.mkdir(parents=True, exist_ok=True)
    files[2].unlink(missing_ok=True)  # an earlier conversion's: the folder is incomplete until the new one exists
    tensors.write(files[0], params)
    files[1].write_text(json.dumps(config, indent=1, sort_keys=True))
    files[2].write_text(json.dumps({"files": {file.name: file_entry(file) for file in files[:2]}}, indent=1))


def converted_config(path: pathlib.Path) -> dict[str, Any]:
  """A converted folder's config as it is loaded (where it came from is for people reading the file)."""
  return {k: v for k, v in json.loads((path / CONFIG_FILE).read_text()).items() if k != "converted_from"}


def converted_params(path: pathlib.Path) -> dict[str, np.ndarray]:
  """A converted folder's parameters, its files checked against its manifest first."""
  if not (path / MANIFEST).is_file():
    raise CheckpointError(f"converted {path}: no {MANIFEST} (it is written last: the conversion did not finish, "
                          f"or predates manifests); convert again")
  try:
    files = json.loads((path / MANIFEST).read_text()).get("files")
  except (OSError, ValueError, AttributeError) as e:
    raise CheckpointError(f"converted {path}: {MANIFEST} is not a readable JSON object ({e})") from None
  if not isinstance(files, dict) or set(files) != {PARAMS_FILE, CONFIG_FILE}:
    raise CheckpointError(f"converted {path}: {MANIFEST} must list exactly {PARAMS_FILE} and {CONFIG_FILE}")
  verify_files(f"converted {path}", path, files)
  return {name: value.astype(np.float32) for name, value in tensors.read(path / PARAMS_FILE).items()}


CONVERTED = Reader("converted", lambda path: (path / PARAMS_FILE).is_file() and (path / CONFIG_FILE).is_file(),
                   converted_config, converted_params)


@dataclasses.dataclass(frozen=True)
class Source:
  """Where `load_config` / `load_params` read: a shipped name, a folder and its reader, or a workdir and step."""

  name: str
  root: str | os.PathLike
  reader: Reader | None = None
  folder: pathlib.Path | None = None
  workdir: pathlib.Path | None = None
  step: int | None = None


def resolve(source: str, step: int | None = None, *, root: str | os.PathLike = CHECKPOINTS) -> Source:
  """The one dispatch over the kinds of source (a CheckpointError naming the shipped names when none fits)."""
  if source in manifest(root):
    return Source(source, root)
  path = pathlib.Path(source).expanduser().resolve()
  reader = next((r for r in (*READERS, CONVERTED) if r.claims(path)), None)
  if reader is not None:
    return Source(source, root, reader=reader, folder=path)
  where, step = workdir.locate(path, step)
  if not (where / CONFIG_FILE).is_file():
    names = ", ".join(available(root)) or "(none)"
    raise CheckpointError(f"{source!r} is neither a pretrained name (available: {names}) nor a workdir with a "
                          f"{CONFIG_FILE} (or a checkpoint folder inside one)")
  return Source(source, root, workdir=where, step=step)


def load_config(source: str, *, root: str | os.PathLike = CHECKPOINTS) -> dict[str, Any]:
  """The config `load_params(source)` gives, without reading or checking any parameter (cheap enough to ask before
  anything is built). A config trained on a zoo task lacks `model_name` here: its task names the family
  (`zoo.pretrained` adds it)."""
  found = resolve(source, root=root)
  if found.reader is not None:
    return found.reader.config(found.folder)
  if found.workdir is not None:
    return json.loads((found.workdir / CONFIG_FILE).read_text())
  return info(source, root)["config"]


def load_params(source: str, step: int | None = None, *, root: str | os.PathLike = CHECKPOINTS) -> Loaded:
  """The parameters and config (as `load_config`) of `source`: a shipped name (its files' sizes and sha256 checked
  first), a folder a reader claims, a workdir (its latest intact checkpoint, or `step`)."""
  found = resolve(source, step, root=root)
  if found.workdir is not None:
    params, config, step = workdir.read(found.workdir, found.step)
    return Loaded(params, config, f"{found.workdir} step {step}", found.workdir, step)
  label = f"pretrained {source!r}" if found.reader is None else f"{found.reader.label} {found.folder}"
  if step is not None:
    raise CheckpointError(f"{label} is a single checkpoint; a step cannot be chosen")
  if found.reader is not None:
    return Loaded(found.reader.params(found.folder), found.reader.config(found.folder), label, None, None)
  verify(source, root)
  arrays = {}
  for file in info(source, root)["files"]:
    arrays.update(tensors.read(pathlib.Path(root) / file))
  return Loaded({path: value.astype(np.float32) for path, value in arrays.items()}, info(source, root)["config"],
                label, None, None)
