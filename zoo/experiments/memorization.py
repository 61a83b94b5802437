"""Kajitsuka & Sato 2024: N random sequences with random per-token labels, one layer, one head, `qk_rank` 1 vs
full, softmax vs true hardmax attention, and the two controls the claim needs; figure: training accuracy against N.

Hardmax is `attention.weights="hardmax"`: one-hot on each query's largest logit in the forward, softmax's gradient
in the backward (straight-through; zoo.attention.reference). A temperature (`attention.temperature=0.01`, the rows
kept as "temperature 0.01") is not hardmax: W_Q and W_K can grow to undo it, so that model has softmax's function
class.
The controls ask whether attention supplies the context at all: "uniform attention" (`weights="uniform"`: every
token gets the mean of the values, so distinct sequences still get distinct contexts, but no query chooses what it
reads) and "FFN only" (`weights="none"`: the attention adds nothing, each token's output reads its own token and
position only). No model of the FFN-only kind can beat the per-token ceiling: the accuracy of the majority label of
each (position, token) pair over the data set, counted from the task's generator (`per_token_ceiling`).
"""

from __future__ import annotations

import pathlib

import numpy as np

from configs import memorization
from zoo.data.tasks.memorization import distinct_sequences
from zoo.experiments.base import (Experiment, Options, Run, config_for, mean_std, over_seeds, pyplot, save,
                                  seeds_note)
from zoo.experiments.registry import register

# (sequence counts N, length, d_model, steps) per variant; the paper states no sizes (CoNLL-2003, training accuracy).
SIZES = {"full": ((64, 256, 1024, 4096), 32, 64, 4000), "quick": ((256, 1024), 16, 32, 600),
         "tiny": ((8,), 16, 16, 4)}
MODELS = {"rank 1, softmax": {"qk_rank": 1}, "full rank, softmax": {},  # name -> model.attention options
          "rank 1, hardmax": {"qk_rank": 1, "weights": "hardmax"}, "full rank, hardmax": {"weights": "hardmax"},
          "rank 1, temperature 0.01": {"qk_rank": 1, "temperature": 0.01},
          "full rank, temperature 0.01": {"temperature": 0.01},
          "uniform attention": {"weights": "uniform"}, "FFN only": {"weights": "none"}}
CEILING = "per-token ceiling (counted)"  # the table's and figure's name for `per_token_ceiling`


def per_token_ceiling(num_sequences: int, length: int, vocab_size: int, seed: int, num_classes: int = 2) -> float:
  """The best training accuracy of any model whose output at position t reads only (t, token_t): each (position,
  token) pair predicts its majority label. The sequences and labels are the task's own (zoo.data.tasks.memorization)."""
  inputs = distinct_sequences(seed, num_sequences, length, vocab_size)  # [N, length]
  labels = np.random.default_rng([seed, 1]).integers(0, num_classes, inputs.shape, dtype=np.int32)
  counts = np.zeros((length, vocab_size, num_classes), np.int64)
  np.add.at(counts, (np.arange(length)[None, :], inputs, labels), 1)
  return float(counts.max(axis=-1).sum() / inputs.size)


@register("memorization")
class Memorization(Experiment):
  takes = ("seeds",)

  def runs(self, variant: str, options: Options = Options()) -> list[Run]:
    del options
    counts, length, d_model, steps = SIZES[variant]
    runs = []
    for model_name, attention in MODELS.items():
      for n in counts:
        model = {"num_layers": 1, "attention": {"num_heads": 1, **attention}}
        task = {"num_sequences": n}
        if variant != "tiny":
          model.update(d_model=d_model, mlp={"dim": 4 * d_model})
          task["length"] = length
        # Batches no larger than the data set (its validation split is the training set, evaluated whole).
        train = {"steps": steps, "checkpoint_every": max(1, steps // 2), "eval_every": 0, "batch_size": min(64, n)}
        name = model_name.replace(", ", "_").replace(" ", "").replace(".", "")
        runs.append(Run(f"{name}_n{n}", {"model": model_name, "n": n},
                        config_for(memorization, "sinusoidal", variant, model=model, task=task, train=train)))
    return runs

  def row(self, run: Run, summary: dict, workdir: pathlib.Path) -> dict:
    del workdir
    task = run.config["task"]
    return {"accuracy": summary["eval_accuracy"], "length": task["length"], "vocab_size": task["vocab_size"],
            "data_seed": task["seed"], "d_model": run.config["model"]["d_model"], "steps": run.config["train"]["steps"]}

  def markdown(self, rows: list[dict], variant: str) -> str:
    counts = sorted({r["n"] for r in rows})
    r0 = rows[0]
    lines = [f"Training accuracy on N random sequences with random binary per-token labels ({variant} run; length "
             f"{r0['length']}, vocabulary {r0['vocab_size']}, one layer, one head, d_model {r0['d_model']}, "
             f"{r0['steps']} steps; chance 0.5). hardmax: one-hot forward, softmax gradient (straight-through); "
             "uniform attention: every token reads the mean of the values; FFN only: the attention adds nothing; "
             f"{CEILING}: the majority label of each (position, token) pair, the most any FFN-only model can fit. "
             "Paper (Kajitsuka & Sato 2024): near-perfect training accuracy with rank-1 W_Q, W_K on CoNLL-2003 "
             "(sizes not stated); theory: one-layer hardmax attention cannot memorize in general."]
    accuracy = over_seeds(rows, ("model", "n"), "accuracy")
    lines[0] += seeds_note(accuracy)
    lines += ["", "| model | " + " | ".join(f"N = {n}" for n in counts) + " |", "|---|" + "---|" * len(counts)]
    for name in trained(rows):
      lines.append(f"| {name} | " + " | ".join(mean_std(accuracy[name, n]) for n in counts) + " |")
    lines.append(f"| {CEILING} | " + " | ".join(f"{ceiling(r0, n):.3f}" for n in counts) + " |")
    return "\n".join(lines) + "\n"

  def plots(self, rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    counts = sorted({r["n"] for r in rows})
    accuracy = over_seeds(rows, ("model", "n"), "accuracy")
    for i, name in enumerate(trained(rows)):  # the mean over seeds, the sample std as error bars where several
      values = [accuracy[name, n] for n in counts]
      style = "--" if "hardmax" in name else "-." if "temperature" in name else "-"
      ax.errorbar(counts, [np.mean(v) for v in values], yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in values],
                  marker="o", label=name, linestyle=style, color=f"C{i}", capsize=3)
    ax.plot(counts, [ceiling(rows[0], n) for n in counts], color="black", linestyle=":", marker="x", label=CEILING)
    ax.axhline(0.5, color="gray", linestyle=":", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequences N")
    ax.set_ylabel("training accuracy")
    ax.set_title(f"Memorization capacity, one layer, one head ({variant} run)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return [save(fig, out / f"{variant}.png")]


def trained(rows: list[dict]) -> list[str]:
  """The models of MODELS that `rows` hold, in MODELS' order (a variant run before a model was added lacks it)."""
  return [name for name in MODELS if any(r["model"] == name for r in rows)]


def ceiling(row: dict, n: int) -> float:
  return per_token_ceiling(n, row["length"], row["vocab_size"], row["data_seed"])
