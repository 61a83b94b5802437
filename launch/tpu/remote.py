"""Shell text for the TPU workers, built in one place: a fixed template whose every value is quoted.

`gcloud ... ssh --command=TEXT` hands TEXT to each worker's shell, so a user's string spliced in raw (a workdir
`gs://b/x; touch f #`, a launch id `$(...)`, a config override) would run there as code, and a workdir with a space
would split into two words. Every remote command is `command(template, **values)`: the templates are constants of
this package, each value is `shlex.quote`d — except `Shell` values, which `command` built itself and which are
already shell syntax. A path under the worker's home directory quotes only its user part, `"$HOME"/zoo_runs/'id'`,
so the remote shell still expands `$HOME`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


class Shell(str):
  """Text that is already shell syntax (the result of `command`): inserted into a template as it is."""


def quote(value: str | int | Sequence[str] | Shell) -> str:
  """One value as shell words: `Shell` text unchanged, a sequence as its items quoted one by one (separate words),
  anything else as one quoted word."""
  if isinstance(value, Shell):
    return value
  if isinstance(value, (list, tuple)):
    return shlex.join(value)
  return shlex.quote(str(value))


def command(template: str, **values: str | int | Sequence[str] | Shell) -> Shell:
  """`template` (str.format fields, no other braces) with each value quoted; a plain `str` of shell text passed as a
  value becomes one word (how `bash -c {job}` gets its script)."""
  return Shell(template.format(**{name: quote(value) for name, value in values.items()}))


HOME = Shell('"$HOME"')
RUNS = command("{home}/zoo_runs", home=HOME)
