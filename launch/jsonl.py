"""JSON-lines output shared by the benchmark and estimate commands: rows printed as they come (and appended to
`--out`), and saved rows read back for `--table`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from absl import flags

from launch.cli import fail

flags.disclaim_key_flags()  # the flags below belong to the command that defines them


def define_out_flag(help_text: str = "also append the JSON lines to this file") -> flags.FlagHolder:
  """--out=PATH. Defined with allow_override: a test process may import several commands, each with its own `--out`
  (one command defines one)."""
  return flags.DEFINE_string("out", None, help_text, allow_override=True)


def define_table_flag() -> flags.FlagHolder:
  """--table=FILE: print the markdown table of rows a run saved (its --out, or its stdout) and exit."""
  return flags.DEFINE_string("table", None, "print the markdown table of saved rows (a JSON-lines file) and exit")


@contextlib.contextmanager
def writer(path: str | None) -> Iterator[Callable[[dict[str, Any]], None]]:
  """emit(row): prints `row` as one JSON line (flushed, so a long run shows its rows as they come) and, with `path`,
  appends it there."""
  with open(path, "a") if path else contextlib.nullcontext() as out:
    def emit(row: dict[str, Any]) -> None:
      line = json.dumps(row)
      print(line, flush=True)
      if out is not None:
        out.write(line + "\n")
        out.flush()

    yield emit


def read(path: str) -> list[dict[str, Any]]:
  """The rows of a JSON-lines file, skipping lines that are not JSON objects (a captured stdout's other output)."""
  try:
    with open(path) as f:
      return [json.loads(line) for line in f if line.strip().startswith("{")]
  except (OSError, json.JSONDecodeError) as e:
    fail(f"cannot read rows from {path}: {e}")
