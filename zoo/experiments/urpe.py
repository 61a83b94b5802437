"""Luo et al. 2022: Position Identification and Even Token Prediction with every registered encoding the encoder
accepts; figures: accuracy per encoding, URPE's learned B and C over the lag."""

from __future__ import annotations

import pathlib

import numpy as np

from configs import etp, pi
from zoo import models, positional, pretrained
from zoo.experiments.base import (Experiment, Options, Run, config_for, mean_std, over_seeds, pyplot, save,
                                  seed_bars, seeds_note)
from zoo.experiments.registry import register
from zoo.nn import compatible

# Luo et al. 2022, read off the poster's bar chart (≈), |V| = 10 / 1,000 / 10,000; L = 128, 3 layers, d 768.
PAPER = {
    "pi": {"none": "0.07 / 0.06 / 0.055", "rpe": "0.13 / 0.11 / 0.105", "urpe": "1.00 / 1.00 / 1.00"},
    "etp": {"none": "0.50 / 0.50 / 0.50", "rpe": "0.58 / 0.54 / 0.52", "urpe": "1.00 / 1.00 / 1.00"},
}
# (length, steps) per variant; the model and data are the config's. ETP's full run is shorter than the config's 32
# so that URPE can reach ≈ 1.0 within CPU time (the paper notes: URPE 0.84 at L = 32 after 4,000 steps).
SIZES = {"pi": {"full": (64, 800), "quick": (32, 400)}, "etp": {"full": (16, 6000), "quick": (16, 800)}}
TINY_ENCODINGS = ("rpe", "urpe")  # tiny runs two encodings (URPE's heat-maps need the urpe run)


def encoder_encodings() -> list[str]:
  """Every registered encoding the encoder family takes (with its default options): its attention core serves it,
  and it is not defined for causal attention only (the encoder is bidirectional)."""
  config = models.parse_config("encoder", {"head": "token"})
  return [name for name in positional.available() if compatible(name, config.attention.impl)
          and (config.causal_attention or not positional.get(name).causal_only)]


def urpe_tables(workdir: pathlib.Path) -> dict[str, list]:
  """URPE's learned B and C, [heads, rows] each, from a finished run's checkpoint (rows = lags −D..D)."""
  params = pretrained.load_params(str(workdir)).params
  pick = lambda suffix: next(v for p, v in sorted(params.items()) if p.endswith(suffix)).tolist()
  return {"b": pick("encoding/b/table"), "c": pick("encoding/c")}  # shared by every layer: the first holds them


class Urpe(Experiment):
  task: str  # "pi" | "etp"
  takes = ("encodings", "steps", "length", "seeds")

  def runs(self, variant: str, options: Options = Options()) -> list[Run]:
    module = {"pi": pi, "etp": etp}[self.task]
    encodings = options.encodings or (TINY_ENCODINGS if variant == "tiny" else encoder_encodings())
    sections = {}
    length, steps = SIZES[self.task].get(variant, (None, None))  # tiny: the smoke config's
    length, steps = options.length or length, options.steps or steps
    if length:
      sections["task"] = {"length": length}
    if steps:
      sections["train"] = {"steps": steps, "checkpoint_every": max(steps // 2, 1)}
    return [Run(f"{self.task}_{pe}", {"encoding": pe}, config_for(module, pe, variant, **sections))
            for pe in encodings]

  def check(self, options: Options) -> str | None:
    valid = encoder_encodings() if options.encodings else []  # builds each encoding once: not per requested name
    if unknown := [n for n in options.encodings if n not in valid]:
      return f"unknown encoding {unknown[0]!r}; valid choices: {', '.join(valid)}"
    return None

  def row(self, run: Run, summary: dict, workdir: pathlib.Path) -> dict:
    out = {"accuracy": summary["eval_accuracy"], "length": run.config["task"]["length"],
           "vocab_size": run.config["task"]["vocab_size"], "steps": run.config["train"]["steps"]}
    return {**out, **urpe_tables(workdir)} if run.labels["encoding"] == "urpe" else out

  def markdown(self, rows: list[dict], variant: str) -> str:
    setup = rows[0]
    chance = f"1/{setup['length']}" if self.task == "pi" else "≈ 0.5"
    lines = [f"{'Position Identification' if self.task == 'pi' else 'Even Token Prediction'} ({variant} run): token "
             f"accuracy on held-out sequences, length {setup['length']}, vocabulary {setup['vocab_size']}, "
             f"{setup['steps']} steps; chance {chance}. Paper (Luo et al. 2022, ≈ from the poster): length 128, "
             "|V| = 10 / 1,000 / 10,000, 3 layers, d 768, 40k steps.", "",
             "| encoding | zoo accuracy | paper (|V| = 10 / 1k / 10k) | s |", "|---|---|---|---|"]
    accuracy, seconds = over_seeds(rows, ("encoding",), "accuracy"), over_seeds(rows, ("encoding",), "seconds")
    lines[0] += seeds_note(accuracy, "; s: the mean")
    for (pe,), values in accuracy.items():
      lines.append(f"| {pe} | {mean_std(values)} | {PAPER[self.task].get(pe, '—')} | "
                   f"{np.mean(seconds[pe,]):.0f} |")
    return "\n".join(lines) + "\n"

  def plots(self, rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    accuracy = over_seeds(rows, ("encoding",), "accuracy")
    names = [pe for pe, in accuracy]
    seed_bars(ax, list(accuracy.values()), ["C3" if n == "urpe" else "C0" for n in names])
    ax.axhline(1 / rows[0]["length"] if self.task == "pi" else 0.5, color="gray", linestyle=":", label="chance")
    paper = [(i, float(v)) for i, pe in enumerate(names) if pe in PAPER[self.task]
             for v in PAPER[self.task][pe].split(" / ")]
    if paper:  # the poster's three vocabularies, one mark each
      ax.scatter(*zip(*paper), marker="_", s=300, linewidths=2, color="black", zorder=3,
                 label="paper (L = 128; |V| = 10, 1k, 10k)")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("eval accuracy")
    ax.set_ylim(0, 1.25)  # the legend above the bars
    ax.set_title(f"{self.task.upper()} at length {rows[0]['length']} ({variant} run)")
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    paths = [save(fig, out / f"{variant}.png")]
    urpe = next((r for r in rows if r["encoding"] == "urpe"), None)
    if urpe is not None:
      fig, axes = plt.subplots(1, 2, figsize=(10, 3), dpi=100)
      for ax, key, title in zip(axes, ("b", "c"), ("B (logit bias)", "C (post-softmax scale)")):
        table = np.asarray(urpe[key])  # [heads, 2 D + 1]: lags −D..D
        centre, reach = table.shape[1] // 2, min(table.shape[1] // 2, urpe["length"] - 1)  # the lags that occur
        table = table[:, centre - reach:centre + reach + 1]
        image = ax.imshow(table, aspect="auto", cmap="RdBu_r",
                          extent=(-reach - 0.5, reach + 0.5, table.shape[0] - 0.5, -0.5))
        ax.set_xlabel("lag k − q")
        ax.set_ylabel("head")
        ax.set_title(f"URPE's learned {title}")
        fig.colorbar(image, ax=ax)
      paths.append(save(fig, out / f"{variant}_urpe_tables.png"))
    return paths


@register("urpe_pi")
class PositionIdentification(Urpe):
  task = "pi"


@register("urpe_etp")
class EvenTokenPrediction(Urpe):
  task = "etp"
