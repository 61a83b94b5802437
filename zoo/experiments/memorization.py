"""Kajitsuka & Sato 2024: N random sequences with random per-token labels, one layer, one head, `qk_rank` 1 vs
full, softmax vs near-hardmax (temperature 0.01); figure: training accuracy against N."""

from __future__ import annotations

import pathlib

from configs import memorization
from zoo.experiments.base import Experiment, Options, Run, config_for, pyplot, save
from zoo.experiments.registry import register

# (sequence counts N, length, d_model, steps) per variant; the paper states no sizes (CoNLL-2003, training accuracy).
SIZES = {"full": ((64, 256, 1024, 4096), 32, 64, 4000), "quick": ((32, 128, 512), 16, 32, 600),
         "tiny": ((8,), 16, 16, 4)}
MODELS = {"rank 1, softmax": {"qk_rank": 1}, "full rank, softmax": {},  # name -> model.attention options
          "rank 1, hardmax": {"qk_rank": 1, "temperature": 0.01},
          "full rank, hardmax": {"temperature": 0.01}}


@register("memorization")
class Memorization(Experiment):
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
        runs.append(Run(f"{model_name.replace(', ', '_').replace(' ', '')}_n{n}", {"model": model_name, "n": n},
                        config_for(memorization, "sinusoidal", variant, model=model, task=task, train=train)))
    return runs

  def row(self, run: Run, summary: dict, workdir: pathlib.Path) -> dict:
    del workdir
    return {"accuracy": summary["eval_accuracy"], "length": run.config["task"]["length"],
            "d_model": run.config["model"]["d_model"], "steps": run.config["train"]["steps"]}

  def markdown(self, rows: list[dict], variant: str) -> str:
    counts = sorted({r["n"] for r in rows})
    r0 = rows[0]
    lines = [f"Training accuracy on N random sequences with random binary per-token labels ({variant} run; length "
             f"{r0['length']}, one layer, one head, d_model {r0['d_model']}, {r0['steps']} steps; chance 0.5; "
             "hardmax = temperature 0.01). Paper (Kajitsuka & Sato 2024): near-perfect training accuracy with rank-1 W_Q, W_K on "
             "CoNLL-2003 (sizes not stated); theory: one-layer hardmax attention cannot memorize in general.", "",
             "| model | " + " | ".join(f"N = {n}" for n in counts) + " |", "|---|" + "---|" * len(counts)]
    for name in MODELS:
      group = sorted((r for r in rows if r["model"] == name), key=lambda r: r["n"])
      lines.append(f"| {name} | " + " | ".join(f"{r['accuracy']:.3f}" for r in group) + " |")
    return "\n".join(lines) + "\n"

  def plots(self, rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for i, name in enumerate(MODELS):
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
