"""Luo et al. 2022's graph result: Graphormer (`spd`) vs Graphormer + URPE (`spd_urpe`) on the built-in graph
tasks (marked-node distance, cycle detection, neighbourhood counts) and, given a `zinc` folder with ZINC-subset's
train.csv and valid.csv (columns smiles, target), on ZINC; figure: the metric per task.

`--encodings` picks other graph encodings for the same runs, GraphGPS's `rwse`, `lappe` and `rrwp` among them
(opt-in: the committed tables hold the two encodings that have been run at every size); the table and figure have
a column for each encoding the rows hold."""

from __future__ import annotations

import pathlib

from configs import graph_cycle, graph_distance, graph_neighbourhood, graph_zinc
from zoo.experiments.base import (Experiment, Options, Run, config_for, mean_std, over_seeds, pyplot, save,
                                  seed_bars, seeds_note)
from zoo.experiments.registry import register
from zoo.models.graph import graph_encodings

TASKS = {"graph_marked_distance": graph_distance, "graph_cycle": graph_cycle,
         "graph_neighbourhood": graph_neighbourhood}
ENCODINGS = ("spd", "spd_urpe")  # the default runs; `--encodings` takes any of `graph_encodings()`
COLORS = {"spd": "C0", "spd_urpe": "C3"}  # the figure's colours; other encodings take the unused ones in turn
# GraphGPS's and GRIT's own ZINC-subset results: whole architectures (an MPNN beside attention; GRIT's attention),
# not these encodings in Graphormer; quoted beside the rows when those encodings ran.
GRAPHGPS_ZINC = {"rwse": "GraphGPS (MPNN + attention, RWSE; Rampášek et al. 2022) 0.070 ± 0.004",
                 "rrwp": "GRIT (RRWP; Ma et al. 2023) 0.059 ± 0.002"}
# The figure's chance lines: the majority class's share of the validation split's labels (graphs for cycle, nodes
# for neighbourhood), counted from the tasks' generators (tests/test_chance_lines.py recounts them); the quick and
# full variants share their data.
MAJORITY = {"graph_cycle": 0.506, "graph_neighbourhood": 0.158}
STEPS = {"full": 1000, "quick": 300}  # tiny: the configs' smoke steps
ZINC_FILES = ("train.csv", "valid.csv")  # in the --zinc folder: SMILES + target CSVs (configs/graph_zinc.py)


def tasks_of(rows: list[dict]) -> list[str]:
  return list(dict.fromkeys(r["task"] for r in rows))  # the built-in tasks, then ZINC when it ran


def encodings_of(rows: list[dict]) -> list[str]:
  return list(dict.fromkeys(r["encoding"] for r in rows))  # in the order they ran


def colors(encodings: list[str]) -> list[str]:
  spare = iter(c for c in (f"C{i}" for i in range(10)) if c not in COLORS.values())
  return [COLORS.get(pe) or next(spare) for pe in encodings]


@register("graph_urpe")
class GraphUrpe(Experiment):
  takes = ("zinc", "encodings", "seeds")

  def runs(self, variant: str, options: Options = Options()) -> list[Run]:
    """Both encodings (or `options.encodings`) on every built-in graph task and, when `options.zinc` names a folder
    of ZINC_FILES, on ZINC with the paper's Graphormer-slim model (configs/graph_zinc.py), CPU-sized: the variant's
    steps, a tenth of them warm-up, batch 128 instead of 256 (measured with the test molecules: ≈ 1.9 s a step at 256
    on 2 cores shared with two sweeps). Tiny runs take the configs' smoke sizes as they are."""
    train = {} if variant == "tiny" else {"steps": STEPS[variant], "checkpoint_every": STEPS[variant] // 2}
    tasks = [(task, module, {"train": train}) for task, module in TASKS.items()]
    if options.zinc:
      files = dict(zip(("train_file", "validation_file"),
                       (str(pathlib.Path(options.zinc, f).resolve()) for f in ZINC_FILES)))
      sections = {"task": files}
      if train:
        sections.update(optimizer={"warmup_steps": train["steps"] // 10}, train={**train, "batch_size": 128})
      tasks.append(("zinc", graph_zinc, sections))
    return [Run(f"{task}_{pe}", {"task": task, "encoding": pe}, config_for(module, pe, variant, **sections))
            for task, module, sections in tasks for pe in options.encodings or ENCODINGS]

  def check(self, options: Options) -> str | None:
    if unknown := [n for n in options.encodings if n not in graph_encodings()]:
      return f"unknown graph encoding {unknown[0]!r}; valid choices: {', '.join(graph_encodings())}"
    if options.zinc and (missing := [f for f in ZINC_FILES if not pathlib.Path(options.zinc, f).is_file()]):
      return (f"--zinc={options.zinc} holds no {missing[0]}; it needs {' and '.join(ZINC_FILES)} (columns smiles, "
              "target)")
    return None

  def row(self, run: Run, summary: dict, workdir: pathlib.Path) -> dict:
    del workdir
    metric = "mae" if "eval_mae" in summary else "accuracy"
    return {"metric": metric, "value": summary[f"eval_{metric}"], "steps": run.config["train"]["steps"]}

  def markdown(self, rows: list[dict], variant: str) -> str:
    lines = [f"Graphormer (`spd`) against Graphormer + URPE (`spd_urpe`) on zoo's generated graph tasks ({variant} "
             f"run, {rows[0]['steps']} steps each; eval metric: MAE ↓ or accuracy ↑). Paper (Luo et al. 2022): "
             "ZINC-subset test MAE 0.122 ± 0.006 → 0.086 ± 0.007 with URPE (ZINC is not in zoo's built-in data: "
             "`--zinc=FOLDER` adds its rows, validation MAE, from its CSVs)."]
    encodings = encodings_of(rows)
    if quoted := [GRAPHGPS_ZINC[pe] for pe in encodings if pe in GRAPHGPS_ZINC]:
      lines[-1] += f" ZINC-subset test MAE of the encodings' own papers: {'; '.join(quoted)}."
    values = over_seeds(rows, ("task", "encoding"), "value")
    lines[-1] += seeds_note(values)
    lines += ["", f"| task | metric | {' | '.join(encodings)} |", "|---" * (len(encodings) + 2) + "|"]
    for task in tasks_of(rows):
      metric = next(r["metric"] for r in rows if r["task"] == task)
      cells = " | ".join(mean_std(values[task, pe]) if (task, pe) in values else "—" for pe in encodings)
      lines.append(f"| {task} | {metric} | {cells} |")
    paper = {"spd": "0.122", "spd_urpe": "0.086"}
    lines.append(f"| ZINC-subset (paper) | MAE | {' | '.join(paper.get(pe, '—') for pe in encodings)} |")
    return "\n".join(lines) + "\n"

  def plots(self, rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
    plt = pyplot()
    tasks, encodings = tasks_of(rows), encodings_of(rows)
    values = over_seeds(rows, ("task", "encoding"), "value")
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks), 3.5), dpi=100)
    for ax, task in zip(axes, tasks):
      seed_bars(ax, [values.get((task, pe), []) for pe in encodings], colors(encodings))
      ax.set_xticks(range(len(encodings)), encodings, fontsize=8 if len(encodings) > 3 else None)
      if task in MAJORITY and variant in STEPS:
        ax.axhline(MAJORITY[task], color="grey", linestyle=":", label=f"majority class {MAJORITY[task]:g}")
        ax.legend(fontsize=7, loc="lower right")
      ax.set_title(task, fontsize=9)
      ax.set_ylabel(f"eval {next(r['metric'] for r in rows if r['task'] == task)}")
    title = ("Graphormer vs Graphormer + URPE" if encodings == list(ENCODINGS)
             else f"graph encodings: {', '.join(encodings)}")
    fig.suptitle(f"{title} ({variant} run)")
    return [save(fig, out / f"{variant}.png")]
