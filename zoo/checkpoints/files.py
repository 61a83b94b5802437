"""Writing a folder's files as one: on a failure (a full disk; safetensors reports its write errors its own way) every
file of the set is removed and one line says what could not be written, so a half-written folder never loads."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator, Sequence

from safetensors import SafetensorError


@contextlib.contextmanager
def all_or_none(files: Sequence[pathlib.Path], what: str, error: type[Exception]) -> Iterator[None]:
  """Runs the block that writes `files`; if it fails with an I/O error, removes them and raises `error` naming
  `what` and the cause in one line."""
  try:
    yield
  except (OSError, SafetensorError) as e:
    for file in files:
      with contextlib.suppress(OSError):
        file.unlink(missing_ok=True)
    raise error(f"cannot write {what}: {getattr(e, 'strerror', None) or e}") from None
