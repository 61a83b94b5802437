r"""The papers' experiments and zoo's studies, one command each: runs, a table beside the paper's numbers, figures.

  python -m launch.reproduce urpe_pi                  # the full (CPU-sized) variant
  python -m launch.reproduce sparse_memory --quick    # a run of minutes
  python -m launch.reproduce memorization --tiny      # seconds: the tests' size (same code, smaller sizes and steps)
  python -m launch.reproduce memorization --redraw    # no training: table and figures from results/memorization
  python -m launch.reproduce graph_urpe --seeds=3     # every run with seeds 0, 1, 2: mean ± std in the table
  python -m launch.reproduce urpe_etp --length=32 --steps=4000 --seeds=2 --encodings=none,rpe,rope,urpe

Experiments (zoo/experiments/, one module each; shared/papers/ holds the papers' task definitions and numbers):
urpe_pi and urpe_etp (Luo et al. 2022), sparse_memory (Wang & E 2024), memorization (Kajitsuka & Sato 2024),
spe_lra and spe_listops (Liutkus et al. 2021; spe_listops: shallow ListOps, the control softmax learns), graph_urpe
(Luo et al. 2022's graphs; --zinc adds ZINC-subset), extrapolate (train short, evaluate long; also
`python -m launch.extrapolate`) and length_tasks (Delétang et al. 2023's algorithmic tasks and passkey retrieval,
--task=NAME; also `python -m launch.extrapolate --task=NAME`).

Every run is an experiment config trained by the same loop as `launch.train` (tfds + grain data, jitted steps,
orbax checkpoints), in <workdir>/<run>. A finished run leaves <workdir>/<run>/result.json and is skipped when the
command runs again; an interrupted one resumes from its checkpoint. Writes <out>/<variant>.jsonl (one line per run),
<variant>.md (zoo's numbers beside the paper's) and <variant>*.png, variant = full | quick | tiny; <out> defaults to
results/<experiment> (results/<experiment>/<task>[/<attention_impl>] with --task, the workdir likewise). Needs
matplotlib (`pip install -e ".[plot]"`; the test extra includes it).
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import time
from typing import TYPE_CHECKING

from absl import app, flags, logging

from launch import jsonl
from launch.cli import fail, parse_flags

if TYPE_CHECKING:
  from zoo import experiments

_QUICK = flags.DEFINE_bool("quick", False, "smaller sizes and fewer steps: a run of minutes")
_TINY = flags.DEFINE_bool("tiny", False, "tiny sizes and a few steps: seconds (the tests' size)")
_WORKDIR = flags.DEFINE_string("workdir", None, "runs go here (default /tmp/zoo/reproduce/<experiment>_<variant>)")
_OUT = jsonl.define_out_flag("table, JSONL and figures (default results/<experiment>)")
_ENCODINGS = flags.DEFINE_list("encodings", [], "urpe_pi, urpe_etp, extrapolate, graph_urpe, length_tasks: "
                               "comma-separated encodings (default: every one the encoder accepts; the experiment's "
                               "list; rope+linear / rope+ntk / rope+yarn for extrapolate's scaled RoPE; graph_urpe's "
                               "spd, spd_urpe, or any graph encoding: rwse, lappe, rrwp; <pe>+randomized for "
                               "length_tasks' randomized positions)")
_ZINC = flags.DEFINE_string("zinc", "", "graph_urpe: a folder with ZINC-subset's train.csv and valid.csv (columns "
                            "smiles, target); adds the ZINC runs")
_STEPS = flags.DEFINE_integer("steps", None, "extrapolate, length_tasks, sparse_memory, urpe_pi, urpe_etp: training "
                              "steps instead of the variant's (rope+<scaling> fine-tunes for a tenth of them)",
                              lower_bound=1)
_LENGTH = flags.DEFINE_integer("length", None, "urpe_pi, urpe_etp: the sequences' length instead of the variant's; "
                               "outputs and runs get a folder of their own (length_<N>)", lower_bound=2)
TASK = flags.DEFINE_string("task", "", "length_tasks: the task (parity_check, reverse_string, duplicate_string, "
                           "bucket_sort, missing_duplicate, passkey); its runs and outputs get a folder of its own")
_SEEDS = flags.DEFINE_integer("seeds", 1, "extrapolate, graph_urpe, length_tasks, memorization, sparse_memory, "
                              "spe_listops, urpe_pi, urpe_etp: train every run with seeds 0 .. N−1 (seed s > 0 in "
                              "<run>_seed<s>); the table gives mean ± std", lower_bound=1)
_REDRAW = flags.DEFINE_bool("redraw", False, "train nothing: redraw <out>/<variant>.md and the figures from the "
                            "<variant>.jsonl there (the committed results' figures after a plotting change)")
_ATTENTION_IMPL = flags.DEFINE_string("attention_impl", "", "length_tasks: every run's attention core (default xla; "
                                      "linear for the SPE encodings' setting)")


def options_error(experiment: experiments.Experiment, options: experiments.Options) -> str | None:
  """One line naming what is wrong with `options` for `experiment`, or None."""
  from zoo import experiments  # noqa: PLC0415
  for field in dataclasses.fields(experiments.Options):
    if getattr(options, field.name) != field.default and field.name not in experiment.takes:
      takers = ", ".join(name for name in experiments.available() if field.name in experiments.get(name).takes)
      return f"--{field.name} applies to {takers} only"
  return experiment.check(options)


def main(argv: list[str]) -> int:
  """Runs experiment argv[1] (the positional argument left after the flags); 0 done, 1 stopped, 2 bad input."""
  logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
  # Imported here, not at the top, as launch.train does: `--help` then answers at once (the experiments bring jax,
  # tfds and the task generators: 4 s).
  from zoo import experiments  # noqa: PLC0415
  from zoo.experiments.sweep import RunStopped, StaleRun, read_rows, redraw, sweep  # noqa: PLC0415
  from zoo.train.workdir import WorkdirError  # noqa: PLC0415

  if len(argv) != 2:
    fail(f"give one experiment; valid choices: {', '.join(experiments.available())}")
  try:
    experiment = experiments.get(argv[1])
  except ValueError as e:
    fail(str(e))
  if _QUICK.value and _TINY.value:
    fail("give at most one of --quick and --tiny")
  options = experiments.Options(encodings=tuple(_ENCODINGS.value), zinc=_ZINC.value, steps=_STEPS.value,
                                task=TASK.value, attention_impl=_ATTENTION_IMPL.value, seeds=_SEEDS.value,
                                length=_LENGTH.value)
  if error := options_error(experiment, options):
    fail(error)
  variant = "quick" if _QUICK.value else "tiny" if _TINY.value else "full"
  length = f"length_{options.length}" if options.length else ""
  own = "".join(f"/{part}" for part in (options.task, options.attention_impl, length) if part)  # their own folder
  workdir = pathlib.Path(_WORKDIR.value or f"/tmp/zoo/reproduce/{experiment.name}_{variant}{own}")
  out = pathlib.Path(_OUT.value or f"results/{experiment.name}{own}")
  if _REDRAW.value:
    if not (out / f"{variant}.jsonl").is_file():
      fail(f"--redraw needs {out / f'{variant}.jsonl'}; run the experiment first or pass its --out")
    written = redraw(experiment, read_rows(out / f"{variant}.jsonl"), out, variant)
    print(f"wrote {', '.join(map(str, written))}", flush=True)
    return 0
  start = time.time()
  try:
    written = sweep(experiment, variant, options, workdir, out, progress=lambda line: print(line, flush=True))
  except RunStopped as stop:
    print(f"stopped: {stop}", file=sys.stderr, flush=True)
    return 1
  except (StaleRun, WorkdirError) as stale:  # WorkdirError: another process trains in the run's workdir
    fail(str(stale))
  print(f"\n{(out / f'{variant}.md').read_text()}\nwrote {', '.join(map(str, written))} ({time.time() - start:.0f} s)",
        flush=True)
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
