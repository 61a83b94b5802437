"""What every command line of zoo shares: absl flags with one-line usage errors and a `--help` that exits 0, flag
helpers (lists, config files, the trained model a command reads), config-file loading."""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable, Collection

from absl import app, flags
from ml_collections import config_flags
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

# The flags this module's helpers define belong to the command that calls them, so its --help lists them.
flags.disclaim_key_flags()
HELP = {"help", "helpshort", "helpfull", "helpxml", "?"}  # absl's help flags (-x or --x): each prints and exits 1


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


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """absl's parsing, with a bad flag as one `error:` line and the help (which absl ends with status 1) status 0."""
  try:
    return flag_values(argv)
  except (flags.Error, AttributeError, KeyError, OSError) as e:
    fail(config_error_message(e))
  except SystemExit as e:
    if e.code == 1 and any(arg.startswith("-") and arg.lstrip("-").split("=")[0] in HELP for arg in argv[1:]):
      sys.exit(0)
    raise


def run(main: Callable[[], None]) -> None:
  """Runs a command: parses its flags (`parse_flags`), refuses positional arguments, calls `main()`."""
  def main_without_arguments(argv: list[str]) -> None:
    if len(argv) > 1:
      fail(f"unexpected arguments {argv[1:]}")
    main()

  app.run(main_without_arguments, flags_parser=parse_flags)


def parse_verb_line(argv: list[str], doc: str, flag_values: flags.FlagValues) -> list[str]:
  """The positional arguments of a command with a verb first (`python -m launch.tpu run NAME --zone=...`), whose flags
  live in their own `flag_values` so that no other command's flags collide with them in a test process that imports
  several commands and calls this one again and again: `--help` prints `doc` and the flags and exits 0, an earlier
  parse is forgotten, then `parse_flags`."""
  if any(arg.startswith("-") and arg.lstrip("-").split("=")[0] in HELP for arg in argv[1:]):
    print(doc, flag_values.get_help(include_special_flags=False), sep="\n", flush=True)
    sys.exit(0)
  flag_values.unparse_flags()
  return parse_flags(argv, flag_values)[1:]


class ListParser(flags.ListParser):
  """Comma-separated values, each converted by `item` (a ValueError is absl's one-line usage error) and, with
  `choices`, one of those."""

  def __init__(self, item: Callable[[str], object], choices: Collection | None):
    super().__init__()
    self.item, self.choices = item, choices

  def parse(self, argument):
    values = [self.item(value) for value in super().parse(argument)]
    unknown = [value for value in values if self.choices is not None and value not in self.choices]
    if unknown:
      raise ValueError(f"{unknown[0]!r} is not one of {', '.join(map(str, self.choices))}")
    return values


def positive_int(text: str) -> int:
  value = int(text)
  if value < 1:
    raise ValueError(f"{value} is not a positive integer")
  return value


def define_list(name: str, default: str, help_string: str, item: Callable[[str], object] = str,
                choices: Collection | None = None) -> flags.FlagHolder:
  """--name=a,b,c: a list of `item`s (e.g. `positive_int`), each one of `choices` when given; '' is the empty list."""
  return flags.DEFINE(ListParser(item, choices), name, default, help_string, serializer=flags.CsvListSerializer(","))


def define_config_flag(help_string: str, argv: list[str] | None = None, name: str = "config") -> flags.FlagHolder:
  """--config=configs/<name>.py[:arg] (or another flag `name`) with dotted overrides. New keys are accepted under
  `model` only — every model option and every option of the chosen encoding
  (`--config.model.positional.options.max_distance=4`, `--config.model.attention.head_dim=32`), which the model's
  option dataclasses then validate, naming the valid ones; a new key anywhere else is an unknown key
  (`load_config`). The overrides are read from `argv` (default: sys.argv), the list later given to `parse_flags`:
  `launch.tpu` checks another program's command line."""
  return config_flags.DEFINE_config_file(name, None, help_string, lock_config=False,
                                         accept_new_attributes=True, sys_argv=argv)


def check_new_keys(overrides: dict, file_config: dict) -> None:
  """Fails on an override of a key the config file does not have, outside the `model` section."""
  for path in overrides:
    *parents, key = path.split(".")
    if parents[:1] == ["model"]:
      continue
    section = file_config
    for name in parents:
      section = section.get(name) if isinstance(section, dict) else None
    if not isinstance(section, dict) or key not in section:
      close = difflib.get_close_matches(key, section if isinstance(section, dict) else [], n=1)
      fail(f"unknown config key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))


def load_config(holder: flags.FlagHolder) -> dict | None:
  """A config-file flag's config with overrides applied, as a dict (None when the flag is unset)."""
  if holder.value is None:
    return None
  config_flag = flags.FLAGS[holder.name]
  try:
    config = holder.value.to_dict()
    file_config = ConfigFileFlagParser(name=holder.name).parse(config_flags.get_config_filename(config_flag))
  except (flags.Error, AttributeError, KeyError, OSError, ValueError) as e:
    fail(config_error_message(e))
  check_new_keys(config_flags.get_override_values(config_flag), file_config.to_dict())
  return config


def define_model_flags() -> tuple[flags.FlagHolder, flags.FlagHolder, flags.FlagHolder]:
  """--pretrained / --workdir / --step: the trained model a command reads."""
  return (flags.DEFINE_string("pretrained", None, "a shipped model's name (see checkpoints/manifest.json)"),
          flags.DEFINE_string("workdir", None, "a training workdir (or a checkpoint folder inside one), a "
                                          "Hugging Face model directory or a launch.convert --out folder"),
          flags.DEFINE_integer("step", None, "with --workdir: this checkpoint step instead of the latest"))


def model_source(pretrained: flags.FlagHolder, workdir: flags.FlagHolder, step: flags.FlagHolder
                 ) -> tuple[str, int | None]:
  """(name or path, step) from the flags of `define_model_flags`; exactly one of --pretrained, --workdir."""
  if (pretrained.value is None) == (workdir.value is None):
    fail("give exactly one of --pretrained=NAME and --workdir=DIR")
  if step.value is not None and workdir.value is None:
    fail("--step needs --workdir")
  return pretrained.value or workdir.value, step.value
