"""Trains an experiment's runs with the shared training loop and writes its JSONL, table and figures.

Every run trains in <workdir>/<run>. A finished run leaves <workdir>/<run>/result.json and is skipped when the sweep
runs again; an interrupted one resumes from its checkpoint. A workdir holding another config's run (the experiment's
sizes changed since) is neither reused nor resumed, so old runs are never relabelled as new ones.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable

from zoo import pretrained
from zoo.experiments.base import Experiment, Options, Run, with_seeds
from zoo.train.workdir import first_difference

RESULT_FILE = "result.json"


class RunStopped(Exception):
  """A run ended before its last step (SIGTERM): the sweep stops too, and the same command resumes both."""


class StaleRun(Exception):
  """A workdir holds a run of another config (the experiment's sizes changed since): reusing it would mislabel it."""


def run_one(experiment: Experiment, run: Run, workdir: pathlib.Path) -> dict:
  """Trains `run` in `workdir` unless it finished before (its result.json); returns its row. A workdir whose
  config.json is another config's (a finished or a half-trained run) is neither reused nor resumed."""
  from zoo.train import init_from, loop  # noqa: PLC0415 — imports JAX; a finished sweep's tables do not need it

  config = run.config
  if run.init_from:  # the other run trained in a sibling workdir, earlier in the sweep
    config = {**config, "train": {**config["train"], "init_from": str(workdir.parent / run.init_from)}}
  saved = workdir / pretrained.CONFIG_FILE  # what the training loop wrote when the run started
  if saved.is_file():
    wanted = init_from.fine_tune_config(config)  # what the loop records: a fine-tune adds its checkpoint's options
    difference = first_difference(json.loads(saved.read_text()), json.loads(json.dumps(wanted)))
    if difference is not None:
      raise StaleRun(f"{workdir} holds run {run.name} trained with another config: {difference}; delete it or pass "
                     "another --workdir")
  done = workdir / RESULT_FILE
  if done.is_file():
    return json.loads(done.read_text())
  start = time.time()
  summary = loop.train_and_evaluate(config, str(workdir))
  if "stopped" in summary:
    raise RunStopped(f"run {run.name} {summary['stopped']} at step {summary['step']}; the same command resumes the "
                     f"sweep from its checkpoint in {workdir}")
  row = {"run": run.name, **run.labels, **experiment.row(run, summary, workdir), "train_loss": summary["loss"],
         "seconds": round(time.time() - start, 1)}
  done.write_text(json.dumps(row))
  return row


def read_rows(jsonl: pathlib.Path) -> list[dict]:
  """The rows a sweep wrote to `jsonl` (each line also names the experiment and the variant)."""
  return [json.loads(line) for line in jsonl.read_text().splitlines()]


def write_outputs(experiment: Experiment, rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
  """<out>/<variant>.jsonl, .md and the figures from finished rows; returns the paths written."""
  out.mkdir(parents=True, exist_ok=True)
  with (out / f"{variant}.jsonl").open("w") as jsonl:
    for row in rows:
      jsonl.write(json.dumps({"experiment": experiment.name, "variant": variant, **row}) + "\n")
  return [out / f"{variant}.jsonl", *redraw(experiment, rows, out, variant)]


def redraw(experiment: Experiment, rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
  """<out>/<variant>.md and the figures from rows (a sweep's, or a committed JSONL's: no training); the paths."""
  (out / f"{variant}.md").write_text(experiment.markdown(rows, variant))
  return [out / f"{variant}.md", *experiment.plots(rows, out, variant)]


def sweep(experiment: Experiment, variant: str, options: Options, workdir: pathlib.Path, out: pathlib.Path,
          progress: Callable[[str], None] = print) -> list[pathlib.Path]:
  """Every run of `variant` (trained or read back), then the outputs; `progress` gets one line per run."""
  rows = []
  for run in with_seeds(experiment.runs(variant, options), options.seeds):
    rows.append(run_one(experiment, run, workdir / run.name))
    progress(f"{experiment.name}/{run.name}: " + json.dumps({k: v for k, v in rows[-1].items()
                                                            if not isinstance(v, list)}))
  return write_outputs(experiment, rows, out, variant)
