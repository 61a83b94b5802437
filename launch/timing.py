"""Wall-clock timing shared by the benchmark commands: `--repeats` and repeats interleaved across the programs
compared, so load from other processes on a shared machine hits all of them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from absl import flags

flags.disclaim_key_flags()  # the flag below belongs to the command that defines it


def define_repeats_flag(default: int) -> flags.FlagHolder:
  return flags.DEFINE_integer("repeats", default, "timed runs of each program, after one warm-up", lower_bound=1)


def seconds(run: Callable[[], object]) -> float:
  start = time.perf_counter()
  run()
  return time.perf_counter() - start


def interleaved(runs: dict[str, Callable[[], object]], repeats: int, rotate: bool = False) -> dict[str, list[float]]:
  """Seconds of each run per repeat, the runs taken in turn (warm-ups are the caller's). With `rotate` each repeat
  starts one run later, so no run always follows the same one (PyTorch's worker threads keep spinning for a while
  after each parallel region)."""
  names = list(runs)
  times = {name: [] for name in names}
  for repeat in range(repeats):
    shift = repeat % len(names) if rotate else 0
    for name in names[shift:] + names[:shift]:
      times[name].append(seconds(runs[name]))
  return times


def min_median(values: list[float], digits: int) -> tuple[float, float]:
  return round(min(values), digits), round(statistics.median(values), digits)
