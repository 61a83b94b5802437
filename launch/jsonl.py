"""JSON-lines output shared by the benchmark and estimate commands."""

from __future__ import annotations

import json
from typing import IO, Any


def emit(row: dict[str, Any], out: IO[str] | None = None) -> None:
  """Prints `row` as one JSON line (flushed, so a long run shows its rows as they come) and appends it to `out`."""
  line = json.dumps(row)
  print(line, flush=True)
  if out is not None:
    out.write(line + "\n")
    out.flush()
