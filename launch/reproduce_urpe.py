r"""The README's main job: the URPE paper's Position Identification, RPE against URPE (an alias of one
`launch.reproduce` experiment, kept because the README and CI run it by this name).

  python -m launch.reproduce_urpe          # = python -m launch.reproduce urpe_pi --encodings=rpe,urpe
                                           #   --workdir=/tmp/zoo/reproduce_urpe --out=/tmp/zoo/reproduce_urpe
  python -m launch.reproduce_urpe --quick --encodings=none,rpe,urpe   # the quick sizes, with the no-encoding row

Its flags are `launch.reproduce`'s (e.g. `--quick`, `--encodings=none,rpe,urpe`, `--workdir`) with the defaults
above; the table and figures go to the workdir, not to results/, which holds the whole experiment's.
"""

from __future__ import annotations

from absl import app, flags

from launch import reproduce
from launch.cli import parse_flags

flags.adopt_module_key_flags(reproduce)  # --help lists them

DEFAULTS = {"encodings": ["rpe", "urpe"], "workdir": "/tmp/zoo/reproduce_urpe", "out": "/tmp/zoo/reproduce_urpe"}


def use_defaults() -> None:
  """This command's defaults in place of `launch.reproduce`'s (before the flags are parsed, so --help shows them)."""
  for name, value in DEFAULTS.items():
    flags.FLAGS.set_default(name, value)


def main(argv: list[str]) -> int:
  return reproduce.main([argv[0], "urpe_pi", *argv[1:]])


if __name__ == "__main__":
  use_defaults()
  app.run(main, flags_parser=parse_flags)
