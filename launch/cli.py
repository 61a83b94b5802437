"""What every command line of zoo shares: one-line usage errors, config-file loading, choosing a trained model."""

from __future__ import annotations

import re
import sys

from absl import flags


def fail(message: str) -> None:
  """A usage error: one line on stderr, exit status 2, no traceback."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


def config_error_message(error: Exception) -> str:
  """One line from the errors ml_collections raises while loading a config file and applying overrides."""
  text = str(error)
  if isinstance(error, (AttributeError, KeyError)):  # an override of a key the config does not have
    key = re.search(r"'([^'\\]+)", text)
    hint = re.search(r'Did you mean "([^"]+)"', text)
    return (f"unknown config key {key.group(1) if key else text!r}"
            + (f" (did you mean {hint.group(1)!r}?)" if hint else ""))
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if len(lines) > 1 and lines[0].endswith(":"):  # "<what failed>:" + traceback or details; the cause is last
    return f"{lines[0]} {lines[-1]}"
  return " ".join(lines)


def parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, OSError) as e:
    fail(config_error_message(e))


def load_config(holder: flags.FlagHolder) -> dict | None:
  """A config-file flag's config with overrides applied, as a dict (None when the flag is unset)."""
  if holder.value is None:
    return None
  try:
    return holder.value.to_dict()
  except (flags.Error, AttributeError, KeyError, OSError, ValueError) as e:
    fail(config_error_message(e))


def define_model_flags() -> tuple[flags.FlagHolder, flags.FlagHolder, flags.FlagHolder]:
  """--pretrained / --workdir / --step: the trained model a command reads."""
  return (flags.DEFINE_string("pretrained", None, "a shipped model's name (see checkpoints/manifest.json)"),
          flags.DEFINE_string("workdir", None, "a training workdir (or a checkpoint folder inside one)"),
          flags.DEFINE_integer("step", None, "with --workdir: this checkpoint step instead of the latest"))


def model_source(pretrained: flags.FlagHolder, workdir: flags.FlagHolder, step: flags.FlagHolder
                 ) -> tuple[str, int | None]:
  """(name or path, step) from the flags of `define_model_flags`; exactly one of --pretrained, --workdir."""
  if (pretrained.value is None) == (workdir.value is None):
    fail("give exactly one of --pretrained=NAME and --workdir=DIR")
  if step.value is not None and workdir.value is None:
    fail("--step needs --workdir")
  return pretrained.value or workdir.value, step.value
