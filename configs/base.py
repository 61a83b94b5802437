"""The shared base of every experiment config: every section at the option dataclasses' defaults.

Experiment files (`configs/<experiment>.py`) call `get_base_config()`, set the task and model sections and state
only what differs from the defaults. The defaults live in one place, the option dataclasses of
`zoo.train.options` (`OptimizerOptions`, `TrainOptions`, `MeshOptions`, `SHARDING_RULES`); every field is here, so
every option can be set from the command line (`--config.optimizer.momentum=0.5`).
"""

import json
import pathlib

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  from zoo.train.options import default_sections  # noqa: PLC0415 — JAX only once a config is built

  return ml_collections.ConfigDict(default_sections())


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
  so that a command-line override such as `--config.model.positional.name=alibi` is judged against the checkpoint,
  not against a copy of its options. Reads the manifest as JSON (no JAX import)."""
  path = pathlib.Path(__file__).resolve().parent.parent / "checkpoints" / "manifest.json"
  models = json.loads(path.read_text())["models"] if path.exists() else {}
  if name not in models:
    raise ValueError(f"config: no shipped model {name!r} in {path}; available: {', '.join(sorted(models)) or '(none)'}")
  config = ml_collections.ConfigDict(models[name]["config"])
  config.model = get_base_config().model  # empty sub-sections: the checkpoint's options fill them
  config.train.init_from = name
  return config
