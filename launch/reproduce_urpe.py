r"""The README's main job: the URPE paper's Position Identification, RPE against URPE (an alias of one
`launch.reproduce` experiment, kept because the README and CI run it by this name).

  python -m launch.reproduce_urpe          # = python -m launch.reproduce urpe_pi --encodings=rpe,urpe
                                           #   --workdir=/tmp/zoo/reproduce_urpe --out=/tmp/zoo/reproduce_urpe

Further arguments are `launch.reproduce`'s (e.g. `--quick`, `--encodings=none,rpe,urpe`, `--workdir`); the table
and figures go to the workdir, not to results/, which holds the whole experiment's.
"""

from __future__ import annotations

import sys

from launch import reproduce

DEFAULTS = ["--encodings=rpe,urpe", "--workdir=/tmp/zoo/reproduce_urpe", "--out=/tmp/zoo/reproduce_urpe"]


def main(argv: list[str] | None = None) -> int:
  given = sys.argv[1:] if argv is None else argv
  flags = {a.split("=")[0] for a in given}
  return reproduce.main(["urpe_pi", *(d for d in DEFAULTS if d.split("=")[0] not in flags), *given])


if __name__ == "__main__":
  sys.exit(main())
