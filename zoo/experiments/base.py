"""What every experiment is made of: its runs (experiment configs), a row from each finished run, a table beside the
paper's numbers and figures. One module per paper or study registers an `Experiment` subclass (registry.py);
`sweep.py` trains the runs and writes the outputs, the same way for every experiment.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import numpy as np

VARIANTS = ("full", "quick", "tiny")


@dataclasses.dataclass(frozen=True)
class Run:
  name: str  # its workdir folder
  labels: dict[str, Any]  # what the table and figures group it by
  config: dict[str, Any]  # the experiment config (launch.train's)
  init_from: str = ""  # another run of the same sweep whose trained parameters this one starts from (a fine-tune)


@dataclasses.dataclass(frozen=True)
class Options:
  """The command line's choices beyond the variant; each experiment's `takes` names those it accepts."""

  encodings: tuple[str, ...] = ()  # the encodings to run (urpe_*, extrapolate, graph_urpe; empty: the default set)
  zinc: str = ""  # graph_urpe: a folder holding ZINC-subset's CSVs, which adds the ZINC runs
  steps: int | None = None  # extrapolate, length_tasks, sparse_memory, urpe_*: training steps, not the variant's
  length: int | None = None  # urpe_*: the task's sequence length instead of the variant's
  task: str = ""  # length_tasks: the registered length-generalisation task to train and test
  attention_impl: str = ""  # length_tasks: the attention core of every run (empty: xla)
  seeds: int = 1  # all but spe_lra: train.seed 0 .. seeds − 1 each; tables: mean ± std


class Experiment:
  """A paper's or a study's experiment; subclasses registered by name (`registry.register`) fill in the four parts.
  Results are rows: the run's labels, `row`'s measurements, the training loss and the seconds the run took."""

  name: str  # set by `register`
  takes: tuple[str, ...] = ()  # the Options fields `runs` accepts

  def runs(self, variant: str, options: Options = Options()) -> list[Run]:
    """The runs of `variant`; only the fields of `options` named in `takes` may differ from their defaults."""
    raise NotImplementedError

  def check(self, options: Options) -> str | None:
    """One line naming what is wrong with the options this experiment takes, or None; runs before any training."""
    del options
    return None

  def row(self, run: Run, summary: dict, workdir: pathlib.Path) -> dict:
    """A finished run's measurements from the training loop's summary and its workdir."""
    raise NotImplementedError

  def markdown(self, rows: list[dict], variant: str) -> str:
    raise NotImplementedError

  def plots(self, rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
    raise NotImplementedError


def with_seeds(runs: list[Run], seeds: int) -> list[Run]:
  """Each run once per seed 0 .. seeds − 1 (`train.seed`: the parameters' initialisation, dropout and the data order;
  the data themselves are the task's): seed 0 keeps the run's name (its earlier workdirs and rows stay valid), seed
  s > 0 is <name>_seed<s> and starts from its own seed's run where it fine-tunes one. Each run's labels name its
  seed."""
  named = lambda name, seed: f"{name}_seed{seed}" if seed and name else name
  return [dataclasses.replace(run, name=named(run.name, seed), labels={**run.labels, "seed": seed},
                              config={**run.config, "train": {**run.config["train"], "seed": seed}},
                              init_from=named(run.init_from, seed))
          for run in runs for seed in range(seeds)]


def group_rows(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
  """The rows grouped by their `keys` labels (one row per seed), in the order the groups first appear."""
  groups: dict[tuple, list[dict]] = {}
  for row in rows:
    groups.setdefault(tuple(row[k] for k in keys), []).append(row)
  return groups


def over_seeds(rows: list[dict], keys: tuple[str, ...], value: str) -> dict[tuple, list[float]]:
  """`value` of the rows grouped by their `keys` labels (one per seed), in the order the groups first appear."""
  return {key: [row[value] for row in group] for key, group in group_rows(rows, keys).items()}


def seeds_note(groups: dict[tuple, list], also: str = "") -> str:
  """The sentence a table's caption gains when a group (one row per seed) holds several seeds, `also` appended;
  "" when every group holds one."""
  if all(len(group) <= 1 for group in groups.values()):
    return ""
  return f" Several seeds: mean ± sample standard deviation (number of seeds){also}."


def mean_std(values: list[float], spec: str = ".3f") -> str:
  """"m" for one value; "m ± s (n)" for several: the mean, the sample standard deviation and how many, each
  formatted by `spec`."""
  if len(values) == 1:
    return f"{values[0]:{spec}}"
  return f"{np.mean(values):{spec}} ± {np.std(values, ddof=1):{spec}} ({len(values)})"


def seed_bars(ax, values: list[list[float]], colors: list[str]) -> None:
  """One bar per group at its mean over seeds (0 for an empty group), with the sample standard deviation as an error
  bar and each seed's value as a dot where a group has several."""
  ax.bar(range(len(values)), [np.mean(v) if v else 0.0 for v in values], color=colors,
         yerr=[np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values], capsize=3)
  for i, v in enumerate(values):
    if len(v) > 1:
      ax.plot([i] * len(v), v, "k.", markersize=3)


def config_for(module, arg: str, variant: str, **sections: dict[str, Any]) -> dict[str, Any]:
  """`module.get_config(arg)` (its `smoke` variant when tiny) with `sections` ({"model": {...}, ...}) updated."""
  config = module.get_config(f"{arg},smoke" if variant == "tiny" else arg)
  for section, values in sections.items():
    config[section].update(values)
  config.train.progress_bar = False
  return config.to_dict()


def pyplot():
  import matplotlib  # noqa: PLC0415 — only the figures need it

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # noqa: PLC0415
  return plt


def save(fig, path: pathlib.Path) -> pathlib.Path:
  fig.tight_layout()
  fig.savefig(path)
  pyplot().close(fig)
  return path
