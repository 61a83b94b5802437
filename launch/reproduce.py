r"""The papers' experiments, one command each: runs, a table beside the paper's numbers, figures.

  python -m launch.reproduce urpe_pi                  # the full (CPU-sized) variant
  python -m launch.reproduce sparse_memory --quick    # a run of minutes
  python -m launch.reproduce memorization --tiny      # seconds: the tests' size (same code, smaller sizes and steps)

Experiments (shared/papers/ holds the papers' task definitions and numbers):

* `urpe_pi`, `urpe_etp` — Luo et al. 2022: Position Identification / Even Token Prediction with every registered
  encoding the encoder accepts; figures: accuracy per encoding, URPE's learned B and C over the lag.
* `sparse_memory` — Wang & E 2024: heavy-tailed (ρ(s) = s^−0.5) and light-tailed (ρ(s) = e^−5s/L) memory targets, a
  causal one-layer dot-product-free model with the p·φ(t − s) encoding (`memory_rpe`), log- vs lin-type, heads
  H = 1, 2, 4, …; figure: error against H (log-log) with the fitted slope per type.
* `memorization` — Kajitsuka & Sato 2024: N random sequences with random per-token labels, one layer, one head,
  `qk_rank` 1 vs full, softmax vs near-hardmax (temperature 0.01); figure: training accuracy against N.
* `spe_lra` — Liutkus et al. 2021: generated ListOps (brackets kept) and Pathfinder, linear attention (ReLU and
  FAVOR+) without PE, with sineSPE and convSPE, against softmax with and without RPE; figure: accuracy per model.
* `graph_urpe` — Luo et al. 2022's graph result: Graphormer (`spd`) vs Graphormer + URPE (`spd_urpe`) on the
  built-in graph tasks (marked-node distance, cycle detection, neighbourhood counts) and, given `--zinc=FOLDER` with
  ZINC-subset's train.csv and valid.csv (columns smiles, target), on ZINC; figure: the metric per task.

Every run is an experiment config trained by the same loop as `launch.train` (tfds + grain data, jitted steps,
orbax checkpoints), in <workdir>/<run>. A finished run leaves <workdir>/<run>/result.json and is skipped when the
command runs again; an interrupted one resumes from its checkpoint. Writes <out>/<variant>.jsonl (one line per run),
<variant>.md (zoo's numbers beside the paper's) and <variant>*.png, variant = full | quick | tiny; <out> defaults to
results/<experiment>. Needs matplotlib (`pip install -e ".[plot]"`; the test extra includes it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from configs import (etp, graph_cycle, graph_distance, graph_neighbourhood, graph_zinc, listops, memorization,
                     pathfinder, pi, sparse_memory)
from zoo import models, positional, pretrained
from zoo.nn import compatible
from zoo.train.workdir import WorkdirError, first_difference

VARIANTS = ("full", "quick", "tiny")


@dataclasses.dataclass(frozen=True)
class Run:
  name: str  # its workdir folder
  labels: dict[str, Any]  # what the table and figures group it by
  config: dict[str, Any]  # the experiment config (launch.train's)


@dataclasses.dataclass(frozen=True)
class Options:
  """The command line's choices beyond the variant; each experiment's `Experiment.takes` names those it accepts."""

  encodings: tuple[str, ...] = ()  # urpe_pi / urpe_etp: the encodings to run (empty: every one the encoder accepts)
  zinc: str = ""  # graph_urpe: a folder holding ZINC-subset's ZINC_FILES, which adds the ZINC runs


def config_for(module, arg: str, variant: str, **sections: dict[str, Any]) -> dict[str, Any]:
  """`module.get_config(arg)` (its `smoke` variant when tiny) with `sections` ({"model": {...}, ...}) updated."""
  config = module.get_config(f"{arg},smoke" if variant == "tiny" else arg)
  for section, values in sections.items():
    config[section].update(values)
  config.train.progress_bar = False
  return config.to_dict()


# ---------------------------------------------------------------------------------------------------------------- URPE

# Luo et al. 2022, read off the poster's bar chart (≈), |V| = 10 / 1,000 / 10,000; L = 128, 3 layers, d 768.
URPE_PAPER = {
    "pi": {"none": "0.07 / 0.06 / 0.055", "rpe": "0.13 / 0.11 / 0.105", "urpe": "1.00 / 1.00 / 1.00"},
    "etp": {"none": "0.50 / 0.50 / 0.50", "rpe": "0.58 / 0.54 / 0.52", "urpe": "1.00 / 1.00 / 1.00"},
}
# (length, steps) per variant; the model and data are the config's. ETP's full run is shorter than the config's 32
# so that URPE can reach ≈ 1.0 within CPU time (the paper notes: URPE 0.84 at L = 32 after 4,000 steps).
URPE_SIZES = {"pi": {"full": (64, 800), "quick": (32, 400)}, "etp": {"full": (16, 6000), "quick": (16, 800)}}
TINY_ENCODINGS = ("rpe", "urpe")  # tiny runs two encodings (URPE's heat-maps need the urpe run)


def encoder_encodings() -> list[str]:
  """Every registered encoding the encoder family's attention core serves (with its default options)."""
  impl = models.parse_config("encoder", {"head": "token"}).attention_impl
  return [name for name in positional.available() if compatible(name, impl)]


def urpe_runs(task: str, variant: str, encodings: Sequence[str] = ()) -> list[Run]:
  module = {"pi": pi, "etp": etp}[task]
  encodings = encodings or (TINY_ENCODINGS if variant == "tiny" else encoder_encodings())
  sections = {}
  if variant != "tiny":
    length, steps = URPE_SIZES[task][variant]
    sections = {"task": {"length": length}, "train": {"steps": steps, "checkpoint_every": steps // 2}}
  return [Run(f"{task}_{pe}", {"encoding": pe}, config_for(module, pe, variant, **sections)) for pe in encodings]


def urpe_tables(workdir: pathlib.Path) -> dict[str, list]:
  """URPE's learned B and C, [heads, rows] each, from a finished run's checkpoint (rows = lags −D..D)."""
  params = pretrained.load_params(str(workdir)).params
  pick = lambda suffix: next(v for p, v in sorted(params.items()) if p.endswith(suffix)).tolist()
  return {"b": pick("encoding/b/table"), "c": pick("encoding/c")}  # shared by every layer: the first holds them


def urpe_markdown(task: str, rows: list[dict], variant: str) -> str:
  setup = rows[0]
  chance = f"1/{setup['length']}" if task == "pi" else "≈ 0.5"
  lines = [f"{'Position Identification' if task == 'pi' else 'Even Token Prediction'} ({variant} run): token "
           f"accuracy on held-out sequences, length {setup['length']}, vocabulary {setup['vocab_size']}, "
           f"{setup['steps']} steps; chance {chance}. Paper (Luo et al. 2022, ≈ from the poster): length 128, "
           "|V| = 10 / 1,000 / 10,000, 3 layers, d 768, 40k steps.", "",
           "| encoding | zoo accuracy | paper (|V| = 10 / 1k / 10k) | s |", "|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['encoding']} | {r['accuracy']:.3f} | {URPE_PAPER[task].get(r['encoding'], '—')} | "
                 f"{r['seconds']:.0f} |")
  return "\n".join(lines) + "\n"


def urpe_plots(task: str, rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
  names = [r["encoding"] for r in rows]
  ax.bar(range(len(rows)), [r["accuracy"] for r in rows], color=["C3" if n == "urpe" else "C0" for n in names])
  ax.axhline(1 / rows[0]["length"] if task == "pi" else 0.5, color="gray", linestyle=":", label="chance")
  ax.set_xticks(range(len(rows)), names, rotation=60, ha="right", fontsize=8)
  ax.set_ylabel("eval accuracy")
  ax.set_ylim(0, 1.05)
  ax.set_title(f"{task.upper()} at length {rows[0]['length']} ({variant} run)")
  ax.legend(fontsize=8)
  paths = [save(fig, out / f"{variant}.png")]
  urpe = next((r for r in rows if r["encoding"] == "urpe"), None)
  if urpe is not None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3), dpi=100)
    for ax, key, title in zip(axes, ("b", "c"), ("B (logit bias)", "C (post-softmax scale)")):
      table = np.asarray(urpe[key])  # [heads, 2 D + 1]: lags −D..D
      centre, reach = table.shape[1] // 2, min(table.shape[1] // 2, urpe["length"] - 1)  # the lags that occur
      table = table[:, centre - reach:centre + reach + 1]
      image = ax.imshow(table, aspect="auto", cmap="RdBu_r", extent=(-reach - 0.5, reach + 0.5, table.shape[0] - 0.5,
                                                                       -0.5))
      ax.set_xlabel("lag k − q")
      ax.set_ylabel("head")
      ax.set_title(f"URPE's learned {title}")
      fig.colorbar(image, ax=ax)
    paths.append(save(fig, out / f"{variant}_urpe_tables.png"))
  return paths


def urpe_row(task: str) -> Callable[[Run, dict, pathlib.Path], dict]:
  def row(run: Run, summary: dict, workdir: pathlib.Path) -> dict:
    out = {"accuracy": summary["eval_accuracy"], "length": run.config["task"]["length"],
           "vocab_size": run.config["task"]["vocab_size"], "steps": run.config["train"]["steps"]}
    return {**out, **urpe_tables(workdir)} if run.labels["encoding"] == "urpe" else out
  return row


# ------------------------------------------------------------------------------------------------------ sparse memory

SPARSE_TARGETS = ("heavy_tailed", "light_tailed")
PHIS = ("log", "lin")
# (length, heads, steps) per variant. The paper: length 1000, H <= 64, 10,000 steps (width, lr, batch not stated).
# A step's cost grows with H · length² (measured: H = 64 at length 128, 0.69 s a step on a shared 2-core machine,
# about 3 s at length 256), so the full variant's 28 runs use length 128 and 400 steps, aiming at about an hour
# (their times summed to 105 min on a machine shared with other sweeps and the test suite).
SPARSE_SIZES = {"full": (128, (1, 2, 4, 8, 16, 32, 64), 400), "quick": (64, (1, 4, 16), 300),
                "tiny": (32, (1, 2), 4)}
# The paper's light-tailed ρ(t) = e^−5t, read with t = s / length (the sequence spans unit time). Read with t = s
# steps, the target y ≈ e^−5 x_{t−1} has variance 4.6e-5 — below the paper's own log-type error of 5.3e-4, so its t
# cannot be steps — and its gradients fall under Adam's ε, so p never moves.
LIGHT_RATE = 5.0
SPARSE_PAPER = {("heavy_tailed", "log"): "1 head: < 1e-5", ("heavy_tailed", "lin"): "64 heads: 0.19",
                ("light_tailed", "lin"): "1 head: < 1e-7", ("light_tailed", "log"): "64 heads: 5.3e-4"}


def sparse_runs(variant: str) -> list[Run]:
  length, heads, steps = SPARSE_SIZES[variant]
  runs = []
  for target in SPARSE_TARGETS:
    for phi in PHIS:
      for h in heads:
        # One layer, dot-product-free, causal (fixed by the task), scored at the last position only (the paper's
        # single-output Task III); head_dim is fixed so that any H fits one width.
        model = {"attention_logits": "positional", "num_heads": h, "head_dim": 8, "pe_options": {"phi": phi}}
        task = {"target": target, "scored": "last"}
        train = {"steps": steps, "checkpoint_every": max(1, steps // 2), "eval_every": 0}
        if variant != "tiny":
          task["length"] = length
        config = config_for(sparse_memory, "memory_rpe", variant, task=task, model=model, train=train,
                            optimizer={"learning_rate": 1e-2, "warmup_steps": min(50, steps // 2)})
        config["task"]["light_rate"] = LIGHT_RATE / config["task"]["length"]  # t = s / length
        runs.append(Run(f"{target}_{phi}_h{h}", {"target": target, "phi": phi, "heads": h}, config))
  return runs


def sparse_row(run: Run, summary: dict, workdir: pathlib.Path) -> dict:
  del workdir
  return {"mse": summary["eval_loss"], "length": run.config["task"]["length"], "steps": run.config["train"]["steps"]}


def fitted_slope(rows: list[dict]) -> float:
  """Least-squares slope of log error against log H."""
  h = np.log([r["heads"] for r in rows])
  e = np.log([max(r["mse"], 1e-12) for r in rows])
  return float(np.polyfit(h, e, 1)[0]) if len(rows) > 1 else float("nan")


def sparse_markdown(rows: list[dict], variant: str) -> str:
  heads = sorted({r["heads"] for r in rows})
  lines = [f"Eval mean squared error at the last position ({variant} run; length {rows[0]['length']}, "
           f"{rows[0]['steps']} steps, one causal dot-product-free layer with p·φ(t − s); heavy-tailed ρ(s) = "
           f"s^−0.5, light-tailed ρ(s) = e^−{LIGHT_RATE:g}s/L, s in steps). Paper (Wang & E 2024, App. H): length "
           "1000, 10,000 steps.", "",
           "| target | RPE type | " + " | ".join(f"H = {h}" for h in heads) + " | slope (log-log) | paper |",
           "|---|---|" + "---|" * (len(heads) + 2)]
  for target in SPARSE_TARGETS:
    for phi in PHIS:
      group = sorted((r for r in rows if (r["target"], r["phi"]) == (target, phi)), key=lambda r: r["heads"])
      cells = " | ".join(f"{r['mse']:.2e}" for r in group)
      lines.append(f"| {target} | {phi} | {cells} | {fitted_slope(group):.2f} | {SPARSE_PAPER[target, phi]} |")
  return "\n".join(lines) + "\n"


def sparse_plots(rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
  plt = pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
  for ax, target, rho in zip(axes, SPARSE_TARGETS, ("ρ(s) = s^−0.5", f"ρ(s) = e^−{LIGHT_RATE:g}s/L")):
    for phi, colour in zip(PHIS, ("C0", "C3")):
      group = sorted((r for r in rows if (r["target"], r["phi"]) == (target, phi)), key=lambda r: r["heads"])
      ax.plot([r["heads"] for r in group], [max(r["mse"], 1e-12) for r in group], marker="o", color=colour,
              label=f"{phi}-type (slope {fitted_slope(group):.2f})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("heads H")
    ax.set_ylabel("eval MSE")
    ax.set_title(f"{target.replace('_', '-')} memory, {rho}")
    ax.legend(fontsize=8)
  fig.suptitle(f"Error vs heads, one DP-free layer ({variant} run)")
  return [save(fig, out / f"{variant}.png")]


# ------------------------------------------------------------------------------------------------------- memorization

# (sequence counts N, length, d_model, steps) per variant; the paper states no sizes (CoNLL-2003, training accuracy).
MEMO_SIZES = {"full": ((64, 256, 1024, 4096), 32, 64, 4000), "quick": ((32, 128, 512), 16, 32, 600),
              "tiny": ((8,), 16, 16, 4)}
MEMO_MODELS = {"rank 1, softmax": {"qk_rank": 1}, "full rank, softmax": {},
               "rank 1, hardmax": {"qk_rank": 1, "attention_temperature": 0.01},
               "full rank, hardmax": {"attention_temperature": 0.01}}


def memo_runs(variant: str) -> list[Run]:
  counts, length, d_model, steps = MEMO_SIZES[variant]
  runs = []
  for model_name, options in MEMO_MODELS.items():
    for n in counts:
      model = {"num_layers": 1, "num_heads": 1, **options}
      task = {"num_sequences": n}
      if variant != "tiny":
        model.update(d_model=d_model, mlp_dim=4 * d_model)
        task["length"] = length
      # Batches no larger than the data set (its validation split is the training set, evaluated whole).
      train = {"steps": steps, "checkpoint_every": max(1, steps // 2), "eval_every": 0, "batch_size": min(64, n)}
      runs.append(Run(f"{model_name.replace(', ', '_').replace(' ', '')}_n{n}", {"model": model_name, "n": n},
                      config_for(memorization, "sinusoidal", variant, model=model, task=task, train=train)))
  return runs


def memo_row(run: Run, summary: dict, workdir: pathlib.Path) -> dict:
  del workdir
  return {"accuracy": summary["eval_accuracy"], "length": run.config["task"]["length"],
          "d_model": run.config["model"]["d_model"], "steps": run.config["train"]["steps"]}


def memo_markdown(rows: list[dict], variant: str) -> str:
  counts = sorted({r["n"] for r in rows})
  r0 = rows[0]
  lines = [f"Training accuracy on N random sequences with random binary per-token labels ({variant} run; length "
           f"{r0['length']}, one layer, one head, d_model {r0['d_model']}, {r0['steps']} steps; chance 0.5; hardmax = "
           "temperature 0.01). Paper (Kajitsuka & Sato 2024): near-perfect training accuracy with rank-1 W_Q, W_K on "
           "CoNLL-2003 (sizes not stated); theory: one-layer hardmax attention cannot memorize in general.", "",
           "| model | " + " | ".join(f"N = {n}" for n in counts) + " |", "|---|" + "---|" * len(counts)]
  for name in MEMO_MODELS:
    group = sorted((r for r in rows if r["model"] == name), key=lambda r: r["n"])
    lines.append(f"| {name} | " + " | ".join(f"{r['accuracy']:.3f}" for r in group) + " |")
  return "\n".join(lines) + "\n"


def memo_plots(rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
  for i, name in enumerate(MEMO_MODELS):
    group = sorted((r for r in rows if r["model"] == name), key=lambda r: r["n"])
    ax.plot([r["n"] for r in group], [r["accuracy"] for r in group], marker="o", label=name,
            linestyle="-" if "softmax" in name else "--", color=f"C{i % 2}")
  ax.axhline(0.5, color="gray", linestyle=":", label="chance")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("sequences N")
  ax.set_ylabel("training accuracy")
  ax.set_title(f"Memorization capacity, one layer, one head ({variant} run)")
  ax.legend(fontsize=8)
  return [save(fig, out / f"{variant}.png")]


# ---------------------------------------------------------------------------------------------------------- SPE, LRA

# name -> (model options, the paper's ListOps accuracy %; its runs had LRA's bracket-stripping bug, zoo's data keeps
# the brackets). Softmax rows: LRA's vanilla Transformer (ListOps 36.37, Pathfinder 71.40).
SPE_MODELS = {
    "linear (relu)": ({"attention_impl": "linear", "feature_map": "relu", "pe": "none"}, "17.58 ± 1.01"),
    "linear (relu) + sineSPE": ({"attention_impl": "linear", "feature_map": "relu", "pe": "spe_sine"}, "17.80 ± 0.00"),
    "linear (relu) + convSPE": ({"attention_impl": "linear", "feature_map": "relu", "pe": "spe_conv"}, "9.18 ± 1.45"),
    "Performer": ({"attention_impl": "linear", "feature_map": "favor", "pe": "none"}, "17.80 ± 0.00"),
    "Performer + sineSPE": ({"attention_impl": "linear", "feature_map": "favor", "pe": "spe_sine"}, "17.43 ± 0.32"),
    "softmax": ({"pe": "none"}, "LRA Transformer: 36.37"),
    "softmax + RPE": ({"pe": "rpe"}, "—"),
}
# Per variant: (ListOps task, Pathfinder task, steps). CPU-sized: ListOps trees much shorter than LRA's 500–2000
# tokens, Pathfinder's easy contours on 16 × 16 images instead of 32 × 32 hard ones (12 × 12 cannot hold them).
# The SPE rows dominated the quick run's time (convSPE 413 s on ListOps and 1,275 s on Pathfinder against ReLU's 35 s
# and 226 s, on a shared machine, before SPE formed shared codes once and filtered by FFT), so the full variant keeps
# the quick lengths and trains 2× longer on 2× the data. Measured after that change, one step of all seven Pathfinder
# models (batch 64 × 257) takes ≈ 10 s on 2 cores shared with another sweep, the seven ListOps ones ≈ 1.5 s (batch
# 64): 400 steps keep the full variant near an hour.
SPE_SIZES = {
    "full": ({"min_length": 16, "max_length": 64, "num_train": 4_000, "num_eval": 500, "num_test": 500},
             {"difficulty": "easy", "image_size": 16, "num_train": 4_000, "num_eval": 500, "num_test": 500}, 400),
    "quick": ({"min_length": 16, "max_length": 64, "num_train": 2_000, "num_eval": 200, "num_test": 200},
              {"difficulty": "easy", "image_size": 16, "num_train": 2_000, "num_eval": 200, "num_test": 200}, 200),
}
SPE_TASKS = {"listops": listops, "pathfinder": pathfinder}


def spe_runs(variant: str) -> list[Run]:
  runs = []
  for i, (task, module) in enumerate(SPE_TASKS.items()):
    for name, (options, _) in SPE_MODELS.items():
      # One small encoder for every row; attention dropout is off (linear attention has none).
      model = {**options, "dropout": 0.0, "attention_dropout": 0.0}
      sections = {"model": model}
      if variant != "tiny":
        model.update(num_layers=2, d_model=64, num_heads=4, mlp_dim=128)
        if model.get("attention_impl") == "linear":
          model["num_features"] = 64  # FAVOR+'s random features (ReLU's feature map ignores it)
        steps = SPE_SIZES[variant][2]
        sections.update(task=SPE_SIZES[variant][i], optimizer={"warmup_steps": steps // 10},
                        train={"steps": steps, "checkpoint_every": steps // 2, "eval_every": 0, "eval_batches": 0})
      pe = model.pop("pe")
      runs.append(Run(f"{task}_{name.replace(' + ', '_').replace(' ', '').replace('(', '').replace(')', '')}",
                      {"task": task, "model": name}, config_for(module, pe, variant, **sections)))
  return runs


def spe_row(run: Run, summary: dict, workdir: pathlib.Path) -> dict:
  del workdir
  return {"accuracy": summary["eval_accuracy"], "steps": run.config["train"]["steps"]}


def spe_markdown(rows: list[dict], variant: str) -> str:
  lines = [f"Validation accuracy (%) on generated ListOps (brackets kept) and Pathfinder ({variant} run, "
           f"{rows[0]['steps']} steps, one 2-layer encoder for every row). Paper (Liutkus et al. 2021): LRA ListOps "
           "test accuracy, mean ± std over 3 seeds, on data with LRA's since-fixed bracket-stripping bug (≈ majority "
           "class); LRA's vanilla Transformer: ListOps 36.37, Pathfinder 71.40.", "",
           "| model | ListOps (zoo) | ListOps (paper) | Pathfinder (zoo) |", "|---|---|---|---|"]
  for name, (_, paper) in SPE_MODELS.items():
    by_task = {r["task"]: r for r in rows if r["model"] == name}
    lines.append(f"| {name} | {100 * by_task['listops']['accuracy']:.1f} | {paper} | "
                 f"{100 * by_task['pathfinder']['accuracy']:.1f} |")
  return "\n".join(lines) + "\n"


def spe_plots(rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
  names = list(SPE_MODELS)
  for offset, task in ((-0.2, "listops"), (0.2, "pathfinder")):
    by_model = {r["model"]: r for r in rows if r["task"] == task}
    ax.bar(np.arange(len(names)) + offset, [100 * by_model[n]["accuracy"] for n in names], width=0.4, label=task)
  ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
  ax.set_ylabel("validation accuracy (%)")
  ax.set_title(f"Linear attention with and without SPE vs softmax ({variant} run)")
  ax.set_ylim(0, 65)  # room above Pathfinder's ≈ 50 % bars for the legend
  ax.legend(fontsize=8, loc="upper right", ncol=2)
  return [save(fig, out / f"{variant}.png")]


# ---------------------------------------------------------------------------------------------------------- graphs

GRAPH_TASKS = {"graph_marked_distance": graph_distance, "graph_cycle": graph_cycle,
               "graph_neighbourhood": graph_neighbourhood}
GRAPH_ENCODINGS = ("spd", "spd_urpe")
GRAPH_STEPS = {"full": 1000, "quick": 300}  # tiny: the configs' smoke steps
ZINC_FILES = ("train.csv", "valid.csv")  # in the --zinc folder: SMILES + target CSVs (configs/graph_zinc.py)


def graph_runs(variant: str, zinc: str = "") -> list[Run]:
  """Both encodings on every built-in graph task and, when `zinc` names a folder of ZINC_FILES, on ZINC with the
  paper's Graphormer-slim model (configs/graph_zinc.py), CPU-sized: the variant's steps, a tenth of them warm-up, batch
  128 instead of 256 (measured with the test molecules: ≈ 1.9 s a step at 256 on 2 cores shared with two sweeps)."""
  train = {} if variant == "tiny" else {"steps": GRAPH_STEPS[variant], "checkpoint_every": GRAPH_STEPS[variant] // 2}
  tasks = [(task, module, {"train": train}) for task, module in GRAPH_TASKS.items()]
  if zinc:
    files = dict(zip(("train_file", "validation_file"), (str(pathlib.Path(zinc, f).resolve()) for f in ZINC_FILES)))
    cpu_sized = {"optimizer": {"warmup_steps": train["steps"] // 10}, "train": {**train, "batch_size": 128}}
    tasks.append(("zinc", graph_zinc, {"task": files, "train": train, **(cpu_sized if train else {})}))
  return [Run(f"{task}_{pe}", {"task": task, "encoding": pe}, config_for(module, pe, variant, **sections))
          for task, module, sections in tasks for pe in GRAPH_ENCODINGS]


def graph_row(run: Run, summary: dict, workdir: pathlib.Path) -> dict:
  del workdir
  metric = "mae" if "eval_mae" in summary else "accuracy"
  return {"metric": metric, "value": summary[f"eval_{metric}"], "steps": run.config["train"]["steps"]}


def graph_markdown(rows: list[dict], variant: str) -> str:
  lines = [f"Graphormer (`spd`) against Graphormer + URPE (`spd_urpe`) on zoo's generated graph tasks ({variant} run, "
           f"{rows[0]['steps']} steps each; eval metric: MAE ↓ or accuracy ↑). Paper (Luo et al. 2022): ZINC-subset "
           "test MAE 0.122 ± 0.006 → 0.086 ± 0.007 with URPE (ZINC is not in zoo's built-in data: "
           "`--zinc=FOLDER` adds its rows, validation MAE, from its CSVs).", "",
           "| task | metric | spd | spd_urpe |", "|---|---|---|---|"]
  for task in graph_tasks(rows):
    by_pe = {r["encoding"]: r for r in rows if r["task"] == task}
    lines.append(f"| {task} | {by_pe['spd']['metric']} | {by_pe['spd']['value']:.3f} | "
                 f"{by_pe['spd_urpe']['value']:.3f} |")
  lines.append("| ZINC-subset (paper) | MAE | 0.122 | 0.086 |")
  return "\n".join(lines) + "\n"


def graph_tasks(rows: list[dict]) -> list[str]:
  return list(dict.fromkeys(r["task"] for r in rows))  # the built-in tasks, then ZINC when it ran


def graph_plots(rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
  plt = pyplot()
  tasks = graph_tasks(rows)
  fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks), 3.5), dpi=100)
  for ax, task in zip(axes, tasks):
    by_pe = {r["encoding"]: r for r in rows if r["task"] == task}
    ax.bar(range(len(GRAPH_ENCODINGS)), [by_pe[pe]["value"] for pe in GRAPH_ENCODINGS], color=["C0", "C3"])
    ax.set_xticks(range(len(GRAPH_ENCODINGS)), GRAPH_ENCODINGS)
    ax.set_title(task, fontsize=9)
    ax.set_ylabel(f"eval {by_pe['spd']['metric']}")
  fig.suptitle(f"Graphormer vs Graphormer + URPE ({variant} run)")
  return [save(fig, out / f"{variant}.png")]


# ---------------------------------------------------------------------------------------------------------- plumbing

@dataclasses.dataclass(frozen=True)
class Experiment:
  runs: Callable[..., list[Run]]  # (variant, **the Options fields named in `takes`)
  row: Callable[[Run, dict, pathlib.Path], dict]  # run, the loop's summary, its workdir -> the row's measurements
  markdown: Callable[[list[dict], str], str]
  plots: Callable[[list[dict], pathlib.Path, str], list[pathlib.Path]]
  takes: tuple[str, ...] = ()  # the Options fields `runs` accepts

  def runs_for(self, variant: str, options: Options = Options()) -> list[Run]:
    """The runs of `variant` with the options this experiment takes."""
    return self.runs(variant, **{name: getattr(options, name) for name in self.takes})


EXPERIMENTS = {
    "urpe_pi": Experiment(lambda v, encodings: urpe_runs("pi", v, encodings), urpe_row("pi"),
                          lambda r, v: urpe_markdown("pi", r, v), lambda r, o, v: urpe_plots("pi", r, o, v),
                          takes=("encodings",)),
    "urpe_etp": Experiment(lambda v, encodings: urpe_runs("etp", v, encodings), urpe_row("etp"),
                           lambda r, v: urpe_markdown("etp", r, v), lambda r, o, v: urpe_plots("etp", r, o, v),
                           takes=("encodings",)),
    "sparse_memory": Experiment(sparse_runs, sparse_row, sparse_markdown, sparse_plots),
    "memorization": Experiment(memo_runs, memo_row, memo_markdown, memo_plots),
    "spe_lra": Experiment(spe_runs, spe_row, spe_markdown, spe_plots),
    "graph_urpe": Experiment(graph_runs, graph_row, graph_markdown, graph_plots, takes=("zinc",)),
}


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


class RunStopped(Exception):
  """A run ended before its last step (SIGTERM): the sweep stops too, and the same command resumes both."""


class StaleRun(Exception):
  """A workdir holds a run of another config (the experiment's sizes changed since): reusing it would mislabel it."""


def run_one(experiment: Experiment, run: Run, workdir: pathlib.Path) -> dict:
  """Trains `run` in `workdir` unless it finished before (its result.json); returns its row. A workdir whose
  config.json is another config's (a finished or a half-trained run) is neither reused nor resumed."""
  saved = workdir / pretrained.CONFIG_FILE  # what the training loop wrote when the run started
  if saved.is_file():
    difference = first_difference(json.loads(saved.read_text()), json.loads(json.dumps(run.config)))
    if difference is not None:
      raise StaleRun(f"{workdir} holds run {run.name} trained with another config: {difference}; delete it or pass "
                     "another --workdir")
  done = workdir / "result.json"
  if done.is_file():
    return json.loads(done.read_text())
  from zoo.train import loop  # noqa: PLC0415 — imports JAX

  start = time.time()
  summary = loop.train_and_evaluate(run.config, str(workdir))
  if "stopped" in summary:
    raise RunStopped(f"run {run.name} {summary['stopped']} at step {summary['step']}; the same command resumes the "
                     f"sweep from its checkpoint in {workdir}")
  row = {"run": run.name, **run.labels, **experiment.row(run, summary, workdir), "train_loss": summary["loss"],
         "seconds": round(time.time() - start, 1)}
  done.write_text(json.dumps(row))
  return row


def options_error(experiment: Experiment, options: Options) -> str | None:
  """One line naming what is wrong with `options` for `experiment`, or None."""
  for field in dataclasses.fields(Options):
    if getattr(options, field.name) and field.name not in experiment.takes:
      takers = ", ".join(name for name, e in EXPERIMENTS.items() if field.name in e.takes)
      return f"--{field.name} applies to {takers} only"
  valid = encoder_encodings() if options.encodings else []  # builds each encoding once: not per requested name
  if unknown := [n for n in options.encodings if n not in valid]:
    return f"unknown encoding {unknown[0]!r}; valid choices: {', '.join(valid)}"
  if options.zinc and (missing := [f for f in ZINC_FILES if not pathlib.Path(options.zinc, f).is_file()]):
    return f"--zinc={options.zinc} holds no {missing[0]}; it needs {' and '.join(ZINC_FILES)} (columns smiles, target)"
  return None


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("experiment", help=f"one of {', '.join(EXPERIMENTS)}")
  size = parser.add_mutually_exclusive_group()
  size.add_argument("--quick", action="store_true", help="smaller sizes and fewer steps: a run of minutes")
  size.add_argument("--tiny", action="store_true", help="tiny sizes and a few steps: seconds (the tests' size)")
  parser.add_argument("--workdir", default=None,
                      help="runs go here (default /tmp/zoo/reproduce/<experiment>_<variant>)")
  parser.add_argument("--out", default=None, help="table, JSONL and figures (default results/<experiment>)")
  parser.add_argument("--encodings", default="", help="urpe_pi / urpe_etp: comma-separated encodings (default: every "
                                                      "one the encoder accepts)")
  parser.add_argument("--zinc", default="", help=f"graph_urpe: a folder with ZINC-subset's {' and '.join(ZINC_FILES)} "
                                                 "(columns smiles, target); adds the ZINC runs")
  args = parser.parse_args(argv)
  options = Options(encodings=tuple(n for n in args.encodings.split(",") if n), zinc=args.zinc)
  error = (f"unknown experiment {args.experiment!r}; valid choices: {', '.join(EXPERIMENTS)}"
           if args.experiment not in EXPERIMENTS else options_error(EXPERIMENTS[args.experiment], options))
  if error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  variant = "quick" if args.quick else "tiny" if args.tiny else "full"
  experiment = EXPERIMENTS[args.experiment]
  workdir = pathlib.Path(args.workdir or f"/tmp/zoo/reproduce/{args.experiment}_{variant}")
  out = pathlib.Path(args.out or f"results/{args.experiment}")
  out.mkdir(parents=True, exist_ok=True)
  rows = []
  start = time.time()
  runs = experiment.runs_for(variant, options)
  for run in runs:
    try:
      rows.append(run_one(experiment, run, workdir / run.name))
    except RunStopped as stop:
      print(f"stopped: {stop}", file=sys.stderr)
      return 1
    except (StaleRun, WorkdirError) as stale:  # WorkdirError: another process trains in the run's workdir
      print(f"error: {stale}", file=sys.stderr)
      return 2
    print(f"{args.experiment}/{run.name}: " + json.dumps({k: v for k, v in rows[-1].items()
                                                           if not isinstance(v, list)}), flush=True)
  with (out / f"{variant}.jsonl").open("w") as jsonl:
    for row in rows:
      jsonl.write(json.dumps({"experiment": args.experiment, "variant": variant, **row}) + "\n")
  (out / f"{variant}.md").write_text(experiment.markdown(rows, variant))
  figures = experiment.plots(rows, out, variant)
  print(f"\n{(out / f'{variant}.md').read_text()}\nwrote {out / f'{variant}.jsonl'}, {out / f'{variant}.md'}, "
        f"{', '.join(map(str, figures))} ({time.time() - start:.0f} s)", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
