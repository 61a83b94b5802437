"""What a checkpoint folder records about its files and its run: the manifest (each file's size and sha256, checked
before anything is read) and `config.json` (the config the parameters belong to).

`checkpoints/manifest.json` lists the shipped models: each one's full config, task, metric, size, training time, the
command that made it and its files. A converted folder has its own `manifest.json` of the same `files` shape.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any

import jax
import ml_collections
from etils import epath

from zoo.errors import CheckpointError

CHECKPOINTS = pathlib.Path(__file__).resolve().parent.parent.parent / "checkpoints"
MANIFEST = "manifest.json"
CONFIG_FILE = "config.json"  # a workdir's config, written by the training loop; a converted folder's too
PARAMS_FILE = "model.safetensors"  # a converted model's parameters, next to its config.json


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


def write_config(config: Any, workdir: str) -> None:
  """`<workdir>/config.json` (local or remote, through etils epath; process 0 only): what `zoo.pretrained.load`,
  `launch.evaluate` and `launch.generate` rebuild a run from. `config` is a dict or a ConfigDict."""
  if jax.process_index() != 0:
    return
  config = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
  path = epath.Path(workdir)
  path.mkdir(parents=True, exist_ok=True)
  (path / CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True))
