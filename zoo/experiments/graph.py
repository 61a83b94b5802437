"""Luo et al. 2022's graph result: Graphormer (`spd`) vs Graphormer + URPE (`spd_urpe`) on the built-in graph
tasks (marked-node distance, cycle detection, neighbourhood counts) and, given a `zinc` folder with ZINC-subset's
train.csv and valid.csv (columns smiles, target), on ZINC; figure: the metric per task."""

from __future__ import annotations

import pathlib

from configs import graph_cycle, graph_distance, graph_neighbourhood, graph_zinc
from zoo.experiments.base import Experiment, Options, Run, config_for, pyplot, save
from zoo.experiments.registry import register

TASKS = {"graph_marked_distance": graph_distance, "graph_cycle": graph_cycle,
         "graph_neighbourhood": graph_neighbourhood}
ENCODINGS = ("spd", "spd_urpe")
STEPS = {"full": 1000, "quick": 300}  # tiny: the configs' smoke steps
ZINC_FILES = ("train.csv", "valid.csv")  # in the --zinc folder: SMILES + target CSVs (configs/graph_zinc.py)


def tasks_of(rows: list[dict]) -> list[str]:
  return list(dict.fromkeys(r["task"] for r in rows))  # the built-in tasks, then ZINC when it ran


@register("graph_urpe")
class GraphUrpe(Experiment):
  takes = ("zinc",)

  def runs(self, variant: str, options: Options = Options()) -> list[Run]:
    """Both encodings on every built-in graph task and, when `options.zinc` names a folder of ZINC_FILES, on ZINC
    with the paper's Graphormer-slim model (configs/graph_zinc.py), CPU-sized: the variant's steps, a tenth of them
    warm-up, batch 128 instead of 256 (measured with the test molecules: ≈ 1.9 s a step at 256 on 2 cores shared
    with two sweeps). Tiny runs take the configs' smoke sizes as they are."""
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
            for task, module, sections in tasks for pe in ENCODINGS]

  def check(self, options: Options) -> str | None:
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
             "`--zinc=FOLDER` adds its rows, validation MAE, from its CSVs).", "",
             "| task | metric | spd | spd_urpe |", "|---|---|---|---|"]
    for task in tasks_of(rows):
      by_pe = {r["encoding"]: r for r in rows if r["task"] == task}
      lines.append(f"| {task} | {by_pe['spd']['metric']} | {by_pe['spd']['value']:.3f} | "
                   f"{by_pe['spd_urpe']['value']:.3f} |")
    lines.append("| ZINC-subset (paper) | MAE | 0.122 | 0.086 |")
    return "\n".join(lines) + "\n"

  def plots(self, rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
    plt = pyplot()
    tasks = tasks_of(rows)
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks), 3.5), dpi=100)
    for ax, task in zip(axes, tasks):
      by_pe = {r["encoding"]: r for r in rows if r["task"] == task}
      ax.bar(range(len(ENCODINGS)), [by_pe[pe]["value"] for pe in ENCODINGS], color=["C0", "C3"])
      ax.set_xticks(range(len(ENCODINGS)), ENCODINGS)
      ax.set_title(task, fontsize=9)
      ax.set_ylabel(f"eval {by_pe['spd']['metric']}")
    fig.suptitle(f"Graphormer vs Graphormer + URPE ({variant} run)")
    return [save(fig, out / f"{variant}.png")]
