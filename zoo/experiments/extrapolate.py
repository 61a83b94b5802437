"""Train short, evaluate long (Press et al. 2022, Fig. 1): one byte-level decoder per positional encoding, trained at
length L by the shared training loop (configs/lm_bytes.py's task and data), evaluated at 1×, 2×, 4×, 8× and 16× L.

Every encoding gets the same architecture, data, seed and number of steps. The corpus is the Python standard
library's source (bytes, so no download; every 20th file is held out, as in the `byte_lm` task). Evaluation runs
the chunked attention core (O(L) memory) over the same held-out bytes at every length, cut into non-overlapping
windows of that length, and reports the mean next-byte loss (nats) over all positions of all windows (so a longer
window differs only in how much context its later bytes see); position tables sized by the training length
(`learned`'s) keep their initial values past it. `rope+<scaling>` (linear, ntk, yarn) starts from the trained RoPE
run, sets RoPE's `scaling` with factor 4 for contexts of 4 L, fine-tunes for `finetune_steps` at 2 L and is
evaluated like the others (the papers' recipe: a short fine-tune at the longer length). `<pe>+window` (`rope+window`:
Mistral's attention) trains the encoding with a sliding attention window of `WINDOW` tokens: every length then reads
the same span of context, the baseline of Chi et al.'s receptive-field analysis (the Sandwich paper).
"""

from __future__ import annotations

import dataclasses
import pathlib
import sysconfig

import jax
import numpy as np
import optax
from flax import nnx

from configs import lm_bytes
from zoo import models, positional, pretrained
from zoo.data.tasks.byte_lm import VALIDATION_EVERY, corpus_files
from zoo.experiments.base import (Experiment, Options, Run, config_for, group_rows, mean_std, pyplot, save,
                                  seeds_note)
from zoo.experiments.registry import register
from zoo.models.config import merge
from zoo.train import param_paths

MULTIPLES = (1, 2, 4, 8, 16)
DEFAULT_ENCODINGS = ("sinusoidal", "learned", "rope", "xpos", "alibi", "kerple_log", "kerple_power", "sandwich",
                     "fire", "cope", "fox", "t5_bias", "rope+yarn", "rope+window")
SCALINGS = ("linear", "ntk", "yarn")
SCALING_FACTOR = 4
WINDOW = 16  # `<pe>+window`: each query sees its 16 latest positions, its own included


@dataclasses.dataclass(frozen=True)
class Setup:
  length: int  # L, the training length
  steps: int
  batch: int
  d_model: int
  num_layers: int
  num_heads: int
  learning_rate: float
  eval_windows: int  # held-out windows at the longest evaluation length (more, shorter ones at the others)
  finetune_steps: int  # rope+<scaling> only
  max_files: int


SETUPS = {
    "full": Setup(length=64, steps=1500, batch=16, d_model=128, num_layers=3, num_heads=4, learning_rate=2e-3,
                  eval_windows=16, finetune_steps=150, max_files=400),
    "quick": Setup(length=32, steps=400, batch=16, d_model=64, num_layers=2, num_heads=4, learning_rate=3e-3,
                   eval_windows=8, finetune_steps=40, max_files=60),
    "tiny": Setup(length=16, steps=4, batch=8, d_model=16, num_layers=1, num_heads=2, learning_rate=3e-3,
                  eval_windows=1, finetune_steps=2, max_files=25),
}


def setup_for(variant: str, steps: int | None = None) -> Setup:
  """The variant's sizes; `steps` replaces its training steps (and a tenth of them its fine-tune steps)."""
  setup = SETUPS[variant]
  return setup if steps is None else dataclasses.replace(setup, steps=steps, finetune_steps=max(1, steps // 10))


def held_out_bytes(max_files: int) -> np.ndarray:
  """The held-out bytes as int32: the standard library's first `max_files` *.py files, every 20th one."""
  files = corpus_files(sysconfig.get_paths()["stdlib"], "*.py", max_files)
  return np.frombuffer(b"".join(p.read_bytes() for k, p in enumerate(files) if k % VALIDATION_EVERY == 0),
                       np.uint8).astype(np.int32)


def run_config(setup: Setup, variant: str, pe: str, pe_options: dict, length: int, steps: int,
               window: int | None = None) -> dict:
  """configs/lm_bytes.py with the decoder's default architecture at the study's sizes and the chunked core (with a
  sliding `window`, if given)."""
  config = config_for(lm_bytes, pe, variant, task={"length": length, "max_files": setup.max_files},
                      optimizer={"learning_rate": setup.learning_rate, "warmup_steps": 0, "weight_decay": 0.01,
                                 "clip_norm": 0.0},
                      train={"steps": steps, "batch_size": setup.batch, "checkpoint_every": 0, "eval_every": 0,
                             "eval_batches": 1, "log_every": max(1, steps // 10)})
  config["model"] = {"num_layers": setup.num_layers, "d_model": setup.d_model,
                     "attention": {"num_heads": setup.num_heads, "impl": "chunked"},
                     "positional": {"name": pe, "options": pe_options}}
  if window is not None:
    config["model"]["attention"]["window"] = window
  return config


def trained_model(workdir: pathlib.Path, family: str, **options) -> nnx.Module:
  """The run's model rebuilt with `options` over its config's (a longer `max_length`, another core, the fields its
  task fixed) and its trained parameters; a parameter longer there than in training (a learned position table)
  keeps its fresh values past the trained rows."""
  loaded = pretrained.load_params(str(workdir))
  graph, fresh, rest = nnx.split(models.build(family, merge(loaded.config["model"], options), seed=0), nnx.Param, ...)
  wanted = param_paths.flatten(fresh)
  values = {}
  for path, value in wanted.items():
    trained = jax.numpy.asarray(loaded.params[path], value.dtype)
    values[path] = trained if trained.shape == value.shape else value.at[:trained.shape[0]].set(trained)
  return nnx.merge(graph, param_paths.replace(fresh, values), rest)


def evaluate(model: nnx.Module, held_out: np.ndarray, train_length: int, eval_windows: int) -> list[float]:
  """The mean next-byte loss at each multiple of L over the first eval_windows × 16 L held-out bytes, cut into
  non-overlapping windows of multiple × L bytes (each window also reads the byte after it, its last target)."""
  model.eval()
  loss_fn = nnx.jit(lambda m, t: optax.softmax_cross_entropy_with_integer_labels(m(t[:, :-1]), t[:, 1:]).mean())
  total = eval_windows * max(MULTIPLES) * train_length
  losses = []
  for multiple in MULTIPLES:
    length = multiple * train_length
    windows = np.stack([held_out[s:s + length + 1] for s in range(0, total, length)])  # [windows, length + 1]
    losses.append(float(loss_fn(model, jax.numpy.asarray(windows))))
  return losses


@register("extrapolate")
class Extrapolate(Experiment):
  takes = ("encodings", "steps", "seeds")

  def runs(self, variant: str, options: Options = Options()) -> list[Run]:
    """One run per encoding; `rope+<scaling>` fine-tunes the `rope` run, which runs first (added when not asked);
    `<pe>+window` trains on its own."""
    setup = setup_for(variant, options.steps)
    labels = {"train_length": setup.length, "steps": setup.steps, "finetune_steps": setup.finetune_steps,
              "eval_windows": setup.eval_windows}
    runs: dict[str, Run] = {}
    for name in options.encodings or DEFAULT_ENCODINGS:
      base, _, scaling = name.partition("+")
      if scaling == "window":
        runs[name] = Run(name, {"encoding": name, **labels},
                         run_config(setup, variant, base, {}, setup.length, setup.steps, window=WINDOW))
        continue
      if base not in runs:
        runs[base] = Run(base, {"encoding": base, **labels},
                         run_config(setup, variant, base, {}, setup.length, setup.steps))
      if scaling:
        scaled = {"scaling": scaling, "factor": SCALING_FACTOR, "original_length": setup.length}
        runs[name] = Run(name, {"encoding": name, **labels},
                         run_config(setup, variant, base, scaled, 2 * setup.length, setup.finetune_steps),
                         init_from=base)
    return list(runs.values())

  def check(self, options: Options) -> str | None:
    valid = [*positional.available(), *(f"rope+{s}" for s in SCALINGS)]
    windowed = lambda name: name.endswith("+window") and name.removesuffix("+window") in positional.available()
    if unknown := [n for n in options.encodings if n not in valid and not windowed(n)]:
      return f"unknown encoding {unknown[0]!r}; valid choices: {', '.join(valid)}, or <encoding>+window"
    return None

  def row(self, run: Run, summary: dict, workdir: pathlib.Path) -> dict:
    del summary
    length = run.labels["train_length"]
    model = trained_model(workdir, "decoder", vocab_size=256, max_length=max(MULTIPLES) * length,
                          attention={"impl": "chunked"})
    held_out = held_out_bytes(run.config["task"]["max_files"])
    return {"eval_lengths": [m * length for m in MULTIPLES],
            "losses": evaluate(model, held_out, length, run.labels["eval_windows"])}

  def markdown(self, rows: list[dict], variant: str) -> str:
    first = rows[0]
    groups = group_rows(rows, ("encoding",))  # one row per seed
    columns = " | ".join(f"{n // first['train_length']}× ({n})" for n in first["eval_lengths"])
    lines = [f"Next-byte loss (nats) on held-out Python source, trained at L = {first['train_length']} for "
             f"{first['steps']} steps ({variant} run; rope+<scaling>: + {first['finetune_steps']} fine-tune steps at "
             "2 L).", "", f"| encoding | {columns} | s (train + eval) |", "|" + "---|" * (len(MULTIPLES) + 2)]
    lines[0] += seeds_note(groups, "; s: the mean")
    for (name,), group in groups.items():
      cells = [mean_std([r["losses"][k] for r in group]) for k in range(len(MULTIPLES))]
      lines.append(f"| {name} | {' | '.join(cells)} | {np.mean([r['seconds'] for r in group]):.0f} |")
    return "\n".join(lines) + "\n"

  def plots(self, rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    lengths = rows[0]["eval_lengths"]
    groups = group_rows(rows, ("encoding",))  # one row per seed
    for i, ((name,), group) in enumerate(groups.items()):  # the 10 default colours, then again dashed
      losses = np.array([r["losses"] for r in group])  # [seeds, lengths]
      spread = losses.std(axis=0, ddof=1) if len(group) > 1 else None  # error bars: the seeds' sample std
      ax.errorbar(lengths, losses.mean(axis=0), yerr=spread, marker="o", linestyle="-" if i < 10 else "--",
                  capsize=2, label=name)
    ax.axvline(rows[0]["train_length"], color="gray", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set_xlabel("evaluation length (bytes); dotted: training length")
    ax.set_ylabel("next-byte loss (nats)" + (", mean over seeds" if len(rows) > len(groups) else ""))
    ax.set_title(f"Train at {rows[0]['train_length']}, evaluate longer ({variant} run)")
    ax.legend(fontsize=8, ncol=2)
    return [save(fig, out / f"{variant}.png")]
