r"""Train short, evaluate long (Press et al. 2022, Fig. 1): `python -m launch.reproduce extrapolate` by its own name.

  python -m launch.extrapolate --quick                          # minutes on a laptop CPU
  python -m launch.extrapolate --encodings=rope,alibi,fire      # the full (CPU-sized) run for some encodings
  python -m launch.extrapolate --encodings=rope,rope+yarn       # RoPE, and RoPE scaled by YaRN after a fine-tune
  python -m launch.extrapolate --quick --seeds=3                # each run with train.seed 0, 1, 2: mean ± std
  python -m launch.extrapolate --tiny --steps=3                 # seconds: the tests' size
  python -m launch.extrapolate --task=parity_check --quick      # Delétang et al.'s task, one row per encoding
  python -m launch.extrapolate --task=passkey --attention_impl=linear --encodings=none,spe_sine,spe_conv

One byte-level decoder per positional encoding, trained at length L by the shared training loop and evaluated at
1×, 2×, 4×, 8× and 16× L (zoo/experiments/extrapolate.py says how). Its flags are `launch.reproduce`'s: --quick /
--tiny, --encodings, --steps, --seeds, --workdir (default /tmp/zoo/reproduce/extrapolate_<variant>; finished runs are
skipped, interrupted ones resume) and --out (default results/extrapolate), which gets <variant>.jsonl (one line per
encoding), <variant>.md (a table) and <variant>.png (loss vs evaluation length, one line per encoding).

With --task it runs `launch.reproduce length_tasks` instead (zoo/experiments/length_tasks.py): an encoder per
encoding trained on inputs of length ≤ 40 of an algorithmic task (parity_check, reverse_string, duplicate_string,
bucket_sort, missing_duplicate) or passkey retrieval and tested on inputs up to 500 long; --attention_impl picks the
core (linear for the SPE encodings), `<pe>+randomized` adds Ruoss et al.'s randomized positions; outputs go to
results/length_tasks/<task>[/<attention_impl>].
"""

from __future__ import annotations

from absl import app, flags

from launch import reproduce
from launch.cli import parse_flags

flags.adopt_module_key_flags(reproduce)  # --help lists them


def main(argv: list[str]) -> int:
  return reproduce.main([argv[0], "length_tasks" if reproduce.TASK.value else "extrapolate", *argv[1:]])


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
