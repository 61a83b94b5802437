"""Local Hugging Face model directories ↔ zoo models, with the tables of `zoo.convert.architectures`.

  family, options, params = zoo.convert.hf.read("/models/tiny-llama")   # config.json + *.safetensors
  zoo.convert.hf.write(family, options, params, "/tmp/out")             # a directory transformers loads

Reading uses the `safetensors` package's numpy API (no torch). Every tensor of the checkpoint is either mapped, or
named by the architecture as one zoo leaves out (a task head it lacks, a buffer): anything else is an error, as is
a config field zoo cannot honour — a converted model computes what the original computes, or it is not converted.
The directory is a user's: an unreadable config or safetensors file, an index naming a file outside the directory
and a tensor whose shape the config's model cannot take are each a one-line `ConversionError`, raised before the
model is written anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from typing import Any

import numpy as np
import safetensors
from flax import nnx
from safetensors import numpy as safetensors_numpy

from zoo import models, positional
from zoo.checkpoints import sources
from zoo.checkpoints.files import all_or_none
from zoo.convert.architectures import ARCHITECTURES, ConversionError, architecture, rope_architecture
from zoo.train import param_paths

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"  # sharded checkpoints: {"weight_map": {tensor: file}}


def read_json(path: pathlib.Path) -> dict[str, Any]:
  """A JSON object from a file of the directory, or a ConversionError naming the file."""
  try:
    value = json.loads(path.read_text())
  except (OSError, ValueError) as e:  # ValueError: invalid JSON or UTF-8
    raise ConversionError(f"{path}: not a readable JSON file ({e})") from None
  if not isinstance(value, dict):
    raise ConversionError(f"{path}: expected a JSON object, got {type(value).__name__}")
  return value


def is_hf_directory(path: str | os.PathLike) -> bool:
  """A directory whose config.json names a Hugging Face `model_type` (an unreadable config.json is an error)."""
  config = pathlib.Path(path) / CONFIG
  return config.is_file() and "model_type" in read_json(config)


def shard_files(directory: pathlib.Path) -> list[str]:
  """The safetensors files of the checkpoint: its index's shards, each a file name in `directory` (an index naming
  `../x` or `/x` is refused before anything is read), or `model.safetensors`."""
  if not (directory / INDEX).is_file():
    if not (directory / WEIGHTS).is_file():
      raise ConversionError(f"{directory}: no {WEIGHTS} or {INDEX} (only safetensors checkpoints are read)")
    return [WEIGHTS]
  weight_map = read_json(directory / INDEX).get("weight_map")
  if not isinstance(weight_map, dict):
    raise ConversionError(f"{directory / INDEX}: no weight_map object")
  files = sorted(set(map(str, weight_map.values())))
  outside = [file for file in files if file in ("", ".", "..") or pathlib.PurePath(file).name != file]
  if outside:
    raise ConversionError(f"{directory / INDEX}: shard {outside[0]!r} is not a file name in the directory")
  return files


def read_tensors(directory: pathlib.Path) -> dict[str, np.ndarray]:
  """Every tensor of `model.safetensors`, or of the shards its index lists, as float32 numpy arrays."""
  tensors = {}
  for file in shard_files(directory):
    try:
      tensors.update(safetensors_numpy.load_file(str(directory / file)))
    except (OSError, safetensors.SafetensorError) as e:  # missing, truncated, a damaged header
      raise ConversionError(f"{directory / file}: not a readable safetensors file ({e})") from None
  return {name: np.asarray(value, np.float32) for name, value in tensors.items()}


def check_shapes(directory: pathlib.Path, family: str, options: dict[str, Any], params: dict[str, np.ndarray],
                 sources: dict[str, str]) -> None:
  """Every converted parameter against the shape the config's model has (built abstractly: no arrays), so a
  tensor of the wrong shape is refused by the conversion, not later by whoever loads what it wrote."""
  model = nnx.eval_shape(lambda: models.build(family, options))
  wanted = {path: tuple(value.shape) for path, value in param_paths.flatten(nnx.state(model, nnx.Param)).items()}
  wrong = [f"{sources[path]} gives {path} shape {tuple(value.shape)}, the config's model has {wanted[path]}"
           for path, value in params.items() if tuple(value.shape) != wanted.get(path, value.shape)]
  if wrong:
    raise ConversionError(f"{directory}: tensor of the wrong shape: {wrong[0]}"
                          f"{f' (and {len(wrong) - 1} more)' if len(wrong) > 1 else ''}")


def read(path: str | os.PathLike) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
  """(zoo family, model options, {zoo parameter path: float32 array}) of a local Hugging Face directory."""
  directory = pathlib.Path(path).expanduser()
  config = read_json(directory / CONFIG)
  arch = architecture(config)
  options = arch.options(config)
  models.parse_config(arch.family, options)  # zoo's own validation of what the mapping produced
  tensors, stored_as = {}, {}  # stored_as: the name without the prefix -> the name in the file (for messages)
  for name, value in read_tensors(directory).items():
    short = next((name[len(p):] for p in arch.prefixes if name.startswith(p)), name)
    tensors[short], stored_as[short] = value, name
  for alias, name in arch.aliases.items():
    if name not in tensors and alias in tensors:
      tensors[name] = tensors.pop(alias)
  params, sources = {}, {}  # sources: zoo path -> the tensors it came from (for messages)
  for rule in arch.rules(config, options):
    missing = [name for name in rule.hf if name not in tensors]
    if missing:
      raise ConversionError(f"{directory}: tensor(s) {', '.join(missing)} missing for {config['model_type']}")
    source = ", ".join(f"{stored_as.get(name, name)} {tuple(tensors[name].shape)}" for name in rule.hf)
    try:
      params.update(zip(rule.zoo, rule.to_zoo(*(tensors.pop(name) for name in rule.hf))))
    except ValueError as e:  # a reshape the tensor's size does not allow
      raise ConversionError(f"{directory}: tensor of the wrong shape: {source} ({e})") from None
    sources.update(dict.fromkeys(rule.zoo, source))
  ignored = arch.ignored + ((r"lm_head\.weight",) if options.get("tie_embeddings") else ())
  unused = sorted(stored_as.get(name, name) for name in tensors
                  if not any(re.fullmatch(pattern, name) for pattern in ignored))
  if unused:
    raise ConversionError(f"{directory}: tensor(s) zoo has no place for: {', '.join(unused[:5])}"
                          f"{' …' if len(unused) > 5 else ''}")
  check_shapes(directory, arch.family, options, params, sources)
  return arch.family, options, params


def resolved_options(config: models.TransformerConfig) -> dict[str, Any]:
  """The model's options (in sections) with what it derives filled in: attention.head_dim, attention.num_kv_heads,
  mlp.dim, every encoding option."""
  options = dataclasses.asdict(config)
  a, pe = config.attention, config.positional
  options["attention"].update(head_dim=a.resolved_head_dim(config.d_model), num_kv_heads=a.resolved_kv_heads)
  options["mlp"]["dim"] = config.mlp.resolved_dim(config.d_model)
  options["positional"]["options"] = dataclasses.asdict(positional.parse_options(pe.name, pe.options))
  return options


def dotted(options: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"attention": {"num_heads": 4}} → {"attention.num_heads": 4}: the keys a person sets, for messages."""
  flat = {}
  for key, value in options.items():
    if isinstance(value, dict) and key in ("attention", "mlp", "norm", "positional"):
      flat.update(dotted(value, f"{prefix}{key}."))
    else:
      flat[prefix + key] = value
  return flat


# A decoder's encoding -> the architecture it is written as (RoPE: Phi-3 where LLaMA cannot carry its options, see
# `rope_architecture`). ALiBi (checked against transformers 5.25): BLOOM
# computes zoo's (Press's slopes, added after the 1/√d scaling); MPT's LayerNorm has no bias (zoo's has one) and
# its slopes differ for head counts that are not powers of two; Falcon's alibi=True adds the bias before the 1/√d
# scaling — neither computes zoo's function.
EXPORTS = {"learned": "gpt2", "rope": "llama", "alibi": "bloom"}
# Options that change training or speed, not the function a trained model computes (linear attention does: it is
# not among them).
FUNCTION_NEUTRAL = ("dropout", "attention.dropout", "positional.randomized_positions", "dtype")


EMBEDDING, LM_HEAD = "embed/table/embedding", "lm_head/kernel"  # [vocab, d_model], [d_model, vocab]


def plain_options(options: dict[str, Any]) -> dict[str, Any]:
  """A decoder's options as Hugging Face's decoders compute them: zoo's default `scale_embeddings=True` multiplies
  the looked-up rows by √d_model, which no exported architecture does, so the scale moves into the input table —
  which then differs from the output table, so the model is untied. `plain_params` moves the parameters along."""
  if not models.parse_config("decoder", options).scale_embeddings:
    return options
  return dict(options, scale_embeddings=False, tie_embeddings=False)


def plain_params(options: dict[str, Any], params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The parameters of `plain_options(options)` that compute what `params` compute: input table × √d_model with
  zoo's float32 factor and float32 rounding (`TokenEmbedding`), so every input row is bit-identical; a tied
  model's output head is the plain table (`attend` multiplies by tableᵀ)."""
  config = models.parse_config("decoder", options)
  if not config.scale_embeddings:
    return params
  table = np.asarray(params[EMBEDDING], np.float32)
  plain = dict(params, **{EMBEDDING: table * np.float32(config.d_model ** 0.5)})
  if config.tie_embeddings:
    plain[LM_HEAD] = table.T
  return plain


def hf_config(family: str, options: dict[str, Any]) -> dict[str, Any]:
  """The Hugging Face config of a zoo decoder (of `plain_options`, the same function), checked by mapping it back:
  every option the architecture fixes must be the model's own, else the error names the first ones that differ and
  the nearest exportable choice."""
  try:
    return checked_config(family, options)
  except ConversionError as e:
    raise ConversionError(f"{e}{nearest(family, options)}") from None


def nearest(family: str, options: dict[str, Any]) -> str:
  """'; the nearest exportable choice: positional.name=...' when the same decoder with another exported encoding
  (its default options) would be written, else ''. Another encoding is a different model: this names what to train
  instead."""
  pe = models.parse_config(family, options).positional
  for other, kind in EXPORTS.items():
    if family == "decoder" and other != pe.name:  # (only decoders are exported at all)
      try:
        checked_config(family, dict(options, positional=dict(name=other, randomized_positions=pe.randomized_positions)))
      except ConversionError:
        continue
      return f"; the nearest exportable choice: positional.name={other!r} (written as {kind})"
  return ""


def checked_config(family: str, options: dict[str, Any]) -> dict[str, Any]:
  """`hf_config` without the suggestion (which calls this for each other encoding)."""
  config = models.parse_config(family, options)
  if family != "decoder" or config.positional.name not in EXPORTS:
    raise ConversionError(f"export: only decoders with encoding {', '.join(map(repr, EXPORTS))} can be written as "
                          f"Hugging Face models ({', '.join(EXPORTS.values())}); got a {family} with "
                          f"{config.positional.name!r}")
  resolved = resolved_options(models.parse_config(family, plain_options(options)))
  kind = EXPORTS[config.positional.name]
  if kind == "llama":
    kind = rope_architecture(resolved["positional"]["options"])
  hf = ARCHITECTURES[kind].export(resolved)
  have = dotted(resolved)
  back = dotted(resolved_options(models.parse_config(family, ARCHITECTURES[kind].options(hf))))
  # The core computes the same softmax attention whichever kernel runs it; linear attention computes another.
  kernel_only = lambda k: k in ("attention.impl", "attention.core") and have["attention.impl"] != "linear"
  differ = [f"{k}={have[k]!r} (needs {v!r})" for k, v in back.items()
            if have[k] != v and k not in FUNCTION_NEUTRAL and not kernel_only(k)]
  if differ:
    raise ConversionError(f"export: this decoder is not {kind}-shaped: {', '.join(differ)}")
  return hf


def write(family: str, options: dict[str, Any], params: dict[str, np.ndarray], path: str | os.PathLike) -> None:
  """Writes a zoo decoder as `config.json` + `model.safetensors` that transformers' `from_pretrained` loads."""
  config = hf_config(family, options)
  arch = ARCHITECTURES[config["model_type"]]
  options, params = plain_options(options), plain_params(options, params)
  tensors = {}
  for rule in arch.rules(config, resolved_options(models.parse_config(family, options))):
    # The base model's tensors carry the LM class's prefix (transformer., model.); its head does not.
    prefix = arch.prefixes[0] if arch.prefixes and not rule.hf[0].startswith("lm_head") else ""
    tensors.update({prefix + name: np.ascontiguousarray(value, np.float32)
                    for name, value in zip(rule.hf, rule.to_hf(*(np.asarray(params[p]) for p in rule.zoo)))})
  directory = pathlib.Path(path)
  files = [directory / WEIGHTS, directory / CONFIG]  # config.json last: it is what marks a Hugging Face directory
  with all_or_none(files, f"the Hugging Face model to {directory}", ConversionError):
    directory.mkdir(parents=True, exist_ok=True)
    files[1].unlink(missing_ok=True)
    safetensors_numpy.save_file(tensors, str(files[0]), metadata={"format": "pt"})
    files[1].write_text(json.dumps(config, indent=1, sort_keys=True))


def source_config(path: pathlib.Path) -> dict[str, Any]:
  """A Hugging Face directory's family and model options, read from its config.json alone (no tensor)."""
  arch = architecture(read_json(path / CONFIG))
  return dict(model_name=arch.family, model=arch.options(read_json(path / CONFIG)))


sources.register(sources.Reader("Hugging Face", is_hf_directory, source_config, lambda path: read(path)[2]))
