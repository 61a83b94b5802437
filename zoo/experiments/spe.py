"""Liutkus et al. 2021: generated ListOps (brackets kept) and Pathfinder, linear attention (ReLU and FAVOR+)
without PE, with sineSPE and convSPE, against softmax with and without RPE; figure: accuracy per model."""

from __future__ import annotations

import pathlib
import re

import numpy as np

from configs import listops, pathfinder
from zoo.experiments.base import (Experiment, Options, Run, config_for, mean_std, over_seeds, pyplot, save,
                                  seed_bars, seeds_note)
from zoo.experiments.registry import register

RELU = {"impl": "linear", "core": {"feature_map": "relu"}}  # model.attention options
FAVOR = {"impl": "linear", "core": {"feature_map": "favor"}}
# name -> (model.attention options, the encoding, the paper's ListOps accuracy %; its runs had LRA's
# bracket-stripping bug, zoo's data keeps the brackets). Softmax rows: LRA's vanilla Transformer (ListOps 36.37,
# Pathfinder 71.40).
MODELS = {
    "linear (relu)": (RELU, "none", "17.58 ± 1.01"),
    "linear (relu) + sineSPE": (RELU, "spe_sine", "17.80 ± 0.00"),
    "linear (relu) + convSPE": (RELU, "spe_conv", "9.18 ± 1.45"),
    "Performer": (FAVOR, "none", "17.80 ± 0.00"),
    "Performer + sineSPE": (FAVOR, "spe_sine", "17.43 ± 0.32"),
    "softmax": ({}, "none", "LRA Transformer: 36.37"),
    "softmax + RPE": ({}, "rpe", "—"),
}
# Per variant: (ListOps task, Pathfinder task, steps). CPU-sized: ListOps trees much shorter than LRA's 500–2000
# tokens, Pathfinder's easy contours on 16 × 16 images instead of 32 × 32 hard ones (12 × 12 cannot hold them).
# The SPE rows dominated the quick run's time (convSPE 413 s on ListOps and 1,275 s on Pathfinder against ReLU's 35 s
# and 226 s, on a shared machine, before SPE formed shared codes once and filtered by FFT), so the full variant keeps
# the quick lengths and trains 2× longer on 2× the data. Measured after that change, one step of all seven Pathfinder
# models (batch 64 × 257) takes ≈ 10 s on 2 cores shared with another sweep, the seven ListOps ones ≈ 1.5 s (batch
# 64): 400 steps keep the full variant near an hour.
SIZES = {
    "full": ({"min_length": 16, "max_length": 64, "num_train": 4_000, "num_eval": 500, "num_test": 500},
             {"difficulty": "easy", "image_size": 16, "num_train": 4_000, "num_eval": 500, "num_test": 500}, 400),
    "quick": ({"min_length": 16, "max_length": 64, "num_train": 2_000, "num_eval": 200, "num_test": 200},
              {"difficulty": "easy", "image_size": 16, "num_train": 2_000, "num_eval": 200, "num_test": 200}, 200),
}
TASKS = {"listops": listops, "pathfinder": pathfinder}
# The figure's chance lines: each variant's majority-class share (%) of the whole validation split, counted from the
# task's generator (tests/test_chance_lines.py recounts them).
MAJORITY = {"full": {"listops": 17.6, "pathfinder": 50.0}, "quick": {"listops": 19.5, "pathfinder": 50.0}}
PAPER_PATHFINDER = {"softmax": 71.40}  # LRA's vanilla Transformer; the SPE paper reports no Pathfinder accuracy


def paper_listops(model: str) -> float | None:
  """The paper's ListOps accuracy (%) of a MODELS row, read from its quoted cell; None where it has none."""
  found = re.search(r"\d+\.\d+", MODELS[model][2])
  return float(found.group()) if found else None


def slug(model: str) -> str:
  """A MODELS row's name as a workdir folder: "linear (relu) + sineSPE" -> "linearrelu_sineSPE"."""
  return model.replace(" + ", "_").replace(" ", "").replace("(", "").replace(")", "")


def sections(attention: dict, variant: str, task: dict, steps: int) -> dict:
  """The config sections of one row: one small encoder for every row, dropout off (linear attention has none); the
  tiny variant keeps the config's smoke sizes, the others a 2-layer d_model 64 encoder trained `steps` on `task`."""
  model = {"dropout": 0.0, "attention": {**attention, "dropout": 0.0}}
  if variant == "tiny":
    return {"model": model}
  model.update(num_layers=2, d_model=64, mlp={"dim": 128})
  model["attention"]["num_heads"] = 4
  if attention.get("impl") == "linear":  # FAVOR+'s random features (ReLU's feature map ignores them)
    model["attention"]["core"] = {**attention["core"], "num_features": 64}
  return {"model": model, "task": task, "optimizer": {"warmup_steps": steps // 10},
          "train": {"steps": steps, "checkpoint_every": steps // 2, "eval_every": 0, "eval_batches": 0}}


@register("spe_lra")
class SpeLra(Experiment):
  def runs(self, variant: str, options: Options = Options()) -> list[Run]:
    del options
    runs = []
    for i, (task, module) in enumerate(TASKS.items()):
      task_options, steps = (SIZES[variant][i], SIZES[variant][2]) if variant in SIZES else ({}, 0)
      runs += [Run(f"{task}_{slug(name)}", {"task": task, "model": name},
                   config_for(module, pe, variant, **sections(attention, variant, task_options, steps)))
               for name, (attention, pe, _) in MODELS.items()]
    return runs

  def row(self, run: Run, summary: dict, workdir: pathlib.Path) -> dict:
    del workdir
    return {"accuracy": summary["eval_accuracy"], "steps": run.config["train"]["steps"]}

  def markdown(self, rows: list[dict], variant: str) -> str:
    lines = [f"Validation accuracy (%) on generated ListOps (brackets kept) and Pathfinder ({variant} run, "
             f"{rows[0]['steps']} steps, one 2-layer encoder for every row). Paper (Liutkus et al. 2021): LRA ListOps "
             "test accuracy, mean ± std over 3 seeds, on data with LRA's since-fixed bracket-stripping bug (≈ majority "
             "class); LRA's vanilla Transformer: ListOps 36.37, Pathfinder 71.40.", "",
             "| model | ListOps (zoo) | ListOps (paper) | Pathfinder (zoo) |", "|---|---|---|---|"]
    for name, (_, _, paper) in MODELS.items():
      by_task = {r["task"]: r for r in rows if r["model"] == name}
      lines.append(f"| {name} | {100 * by_task['listops']['accuracy']:.1f} | {paper} | "
                   f"{100 * by_task['pathfinder']['accuracy']:.1f} |")
    return "\n".join(lines) + "\n"

  def plots(self, rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    names = list(MODELS)
    papers = {"listops": {n: paper_listops(n) for n in names}, "pathfinder": PAPER_PATHFINDER}
    for offset, task, colour in ((-0.2, "listops", "C0"), (0.2, "pathfinder", "C1")):
      by_model = {r["model"]: r for r in rows if r["task"] == task}
      x = np.arange(len(names)) + offset
      ax.bar(x, [100 * by_model[n]["accuracy"] for n in names], width=0.4, color=colour, label=task)
      quoted = [(x[i], papers[task][n]) for i, n in enumerate(names) if papers[task].get(n) is not None]
      if quoted:
        ax.scatter(*zip(*quoted), marker="_", s=200, linewidths=2, color="black", zorder=3,
                   label="paper" if task == "listops" else None)
      if task in MAJORITY.get(variant, {}):
        ax.axhline(MAJORITY[variant][task], color=colour, linestyle=":", linewidth=1.5,
                   label=f"{task} validation majority class {MAJORITY[variant][task]:g} %")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"Linear attention with and without SPE vs softmax ({variant} run)")
    ax.set_ylim(0, 95)  # room above the paper's 71.4 for the legend
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    return [save(fig, out / f"{variant}.png")]


# The positive control the LRA-sized runs lack: ListOps shallow and short enough (depth ≤ 3, 8 < tokens < 64, mean
# ≈ 22) that a 2-layer softmax encoder learns it well past the majority class in a few thousand CPU steps (a probe:
# 37.6 % after 500 steps against 17 %), so the rows can differ. Per variant: (ListOps task, steps, batch).
CONTROL_SIZES = {
    "full": ({"max_depth": 3, "min_length": 8, "max_length": 64, "num_train": 20_000, "num_eval": 1_000,
              "num_test": 1_000}, 3000, 64),
    "quick": ({"max_depth": 3, "min_length": 8, "max_length": 64, "num_train": 5_000, "num_eval": 500,
               "num_test": 500}, 500, 64),
}
CONTROL_MAJORITY = {"full": 17.0, "quick": 15.8}  # % of the validation split (tests/test_chance_lines.py recounts)


@register("spe_listops")
class SpeListops(SpeLra):
  """Every MODELS row on shallow ListOps, over `--seeds`: softmax against linear attention (ReLU, FAVOR+) with and
  without SPE where softmax does learn the task."""

  takes = ("seeds",)

  def runs(self, variant: str, options: Options = Options()) -> list[Run]:
    del options
    runs = []
    for name, (attention, pe, _) in MODELS.items():
      if variant in CONTROL_SIZES:
        task, steps, batch = CONTROL_SIZES[variant]
        config = sections(attention, variant, task, steps)
        config["train"]["batch_size"] = batch
      else:
        config = sections(attention, variant, {}, 0)
      runs.append(Run(f"listops_{slug(name)}", {"task": "listops", "model": name},
                      config_for(listops, pe, variant, **config)))
    return runs

  def markdown(self, rows: list[dict], variant: str) -> str:
    accuracy = over_seeds(rows, ("model",), "accuracy")
    lines = [f"Validation accuracy (%) on generated ListOps of depth ≤ 3 and 9–63 tokens ({variant} run, "
             f"{rows[0]['steps']} steps, one 2-layer encoder for every row; majority class "
             f"{CONTROL_MAJORITY.get(variant, 'n/a')} %, chance 10 %). Paper (Liutkus et al. 2021): LRA ListOps, "
             "no shallow control; LRA's vanilla Transformer 36.37 %."]
    lines[0] += seeds_note(accuracy)
    lines += ["", "| model | ListOps depth ≤ 3 (zoo) |", "|---|---|"]
    lines += [f"| {name} | {mean_std([100 * a for a in accuracy[(name,)]], '.1f')} |" for name in MODELS
              if (name,) in accuracy]
    return "\n".join(lines) + "\n"

  def plots(self, rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    accuracy = over_seeds(rows, ("model",), "accuracy")
    names = [n for n in MODELS if (n,) in accuracy]
    seed_bars(ax, [[100 * a for a in accuracy[(n,)]] for n in names], [f"C{i}" for i in range(len(names))])
    if variant in CONTROL_MAJORITY:
      ax.axhline(CONTROL_MAJORITY[variant], color="grey", linestyle=":",
                 label=f"validation majority class {CONTROL_MAJORITY[variant]:g} %")
    ax.axhline(10, color="black", linestyle="--", linewidth=1, label="chance 10 %")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Shallow ListOps: linear attention ± SPE vs softmax ({variant} run)")
    ax.legend(fontsize=8, loc="upper right")
    return [save(fig, out / f"{variant}.png")]
