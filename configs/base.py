"""The shared base of every experiment config: optimizer, training loop, mesh and sharding-rule defaults.

Experiment files (`configs/<experiment>.py`) call `get_base_config()` and set the task and model sections.
"""

import json
import pathlib

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = ml_collections.ConfigDict()
  config.model = ml_collections.ConfigDict()
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=1e-3, schedule="cosine", warmup_steps=100, end_factor=0.0, b1=0.9, b2=0.999,
      eps=1e-8, weight_decay=0.0, clip_norm=1.0))
  config.train = ml_collections.ConfigDict(dict(
      steps=1000, batch_size=64, grad_accum_steps=1, seed=0, log_every=50, eval_every=0, eval_batch_size=0,
      eval_batches=0, checkpoint_every=500, max_to_keep=3, data_dir="", log_dir="", progress_bar=True,
      init_from="", init_from_step=0, init_from_allow_mismatch=False, trainable=""))
  config.train.profile_steps = ""  # e.g. "5:8": a jax.profiler trace of steps 5, 6, 7 in <log_dir or workdir>/profile
  # Device mesh: data-parallel over all devices by default; -1 = the rest.
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  config.mesh.slices = 1  # TPU slices joined by DCN (multi-slice); the data axis spans them
  # Logical axis → mesh axes (comma-separated; "" = replicated). FSDP shards the model width and the batch,
  # tensor parallelism the heads, the MLP width and the vocabulary; the stacked axis of scanned layers stays whole.
  config.sharding_rules = ml_collections.ConfigDict(dict(
      batch="data,fsdp", embed="fsdp", heads="tensor", kv="", mlp="tensor", vocab="tensor", layers=""))
  return config


def parse_arg(arg: str | None, *, default: str, flags: tuple[str, ...] = ("smoke",)) -> tuple[str, set[str]]:
  """Variant strings of `get_config(arg)`: "urpe,smoke" → ("urpe", {"smoke"}); "" → (default, set()).

  `smoke` (big_vision's habit) shrinks a config to tiny shapes and a few steps, so tests and newcomers run the very
  same file small.
  """
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  name = parts.pop(0) if parts and parts[0] not in flags else default
  unknown = sorted(set(parts) - set(flags))
  if unknown:
    raise ValueError(f"config arg: unknown variant(s) {', '.join(unknown)}; valid variants: {', '.join(flags)}")
  return name, set(parts)


def from_pretrained(name: str) -> ml_collections.ConfigDict:
  """The config a shipped model was trained with (checkpoints/manifest.json) with `train.init_from` = `name` and
  an empty `model` section: fine-tuning configs start here and state what they change. The training run fills in
  every model option the checkpoint states and the config leaves unset (`zoo.train.init_from.fine_tune_config`),
  so that a command-line override such as `--config.model.pe=alibi` is judged against the checkpoint, not against
  a copy of its options. Reads the manifest as JSON (no JAX import)."""
  path = pathlib.Path(__file__).resolve().parent.parent / "checkpoints" / "manifest.json"
  models = json.loads(path.read_text())["models"] if path.exists() else {}
  if name not in models:
    raise ValueError(f"config: no shipped model {name!r} in {path}; available: {', '.join(sorted(models)) or '(none)'}")
  config = ml_collections.ConfigDict(models[name]["config"])
  config.model = ml_collections.ConfigDict()
  config.train.init_from = name
  return config
