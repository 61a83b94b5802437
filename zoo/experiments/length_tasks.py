"""Length generalisation on algorithmic tasks (Delétang et al., ICLR 2023) and passkey retrieval: train on inputs of
length 1..L, test up to many times L, one encoder per positional encoding.

The paper's protocol scaled to CPU: training lengths uniform in 1..40 (the full variant's L), test lengths up to
500, accuracy = the share of output symbols right (answer tokens, zoo/data/tasks/length_generalisation.py), a
fresh set of examples per test length drawn from the task's own generator. Every encoding gets the same
architecture, data, seed and steps; `<pe>+randomized` trains with `model.randomized_positions` (Ruoss et al. 2023:
sorted random positions from 0..M−1, M the longest test tape, so every test position was seen in training) and tests
on 0..n−1. Passkey is also tested by the depth of its key (the task's grid), averaged over the lengths past L.
Softmax runs are tested with the chunked core (the same function in O(L) memory), linear ones with their own.
The table gives the mean accuracy per length bucket; the figure accuracy by length (and passkey's by depth).
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np
from flax import nnx

from configs import length_tasks
from zoo import attention, positional
from zoo.data import tasks
from zoo.data.tasks.length_generalisation import LengthTask
from zoo.experiments.base import (Experiment, Options, Run, config_for, group_rows, mean_std, pyplot, save,
                                  seeds_note)
from zoo.experiments.extrapolate import trained_model
from zoo.experiments.registry import register
from zoo.models.config import merge
from zoo.nn.attention import incompatibility

RANDOMIZED = "randomized"
DEFAULT_ENCODINGS = {"softmax": ("none", "sinusoidal", "rope", "alibi", "t5_bias", "rope+randomized"),
                     "linear": ("none", "sinusoidal", "rope", "spe_sine", "spe_conv", "rope+randomized")}
TEST_SPLIT = 2  # the test examples' seed stream, apart from the task's train (0) and validation (1) splits
TEST_BATCH = 16


@dataclasses.dataclass(frozen=True)
class Setup:
  train_length: int  # L: training inputs have lengths 1..L (the task's shortest up)
  eval_lengths: tuple[int, ...]
  buckets: tuple[int, ...]  # the table's buckets: lengths up to buckets[0] (= L), then (buckets[i−1], buckets[i]]
  steps: int
  batch: int
  d_model: int
  num_layers: int
  num_heads: int
  learning_rate: float
  num_train: int
  eval_examples: int  # per test length (and passkey depth)


SETUPS = {
    "full": Setup(train_length=40, eval_lengths=(10, 20, 30, 40, 60, 80, 100, 150, 200, 300, 400, 500),
                  buckets=(40, 100, 200, 500), steps=2000, batch=32, d_model=64, num_layers=2, num_heads=4,
                  learning_rate=1e-3, num_train=100_000, eval_examples=64),
    "quick": Setup(train_length=20, eval_lengths=(5, 10, 15, 20, 30, 40, 60, 80, 100), buckets=(20, 40, 100),
                   steps=1500, batch=32, d_model=32, num_layers=2, num_heads=4, learning_rate=2e-3, num_train=16_384,
                   eval_examples=32),
    "tiny": Setup(train_length=8, eval_lengths=(8, 16), buckets=(8, 16), steps=4, batch=8, d_model=16,
                  num_layers=1, num_heads=2, learning_rate=3e-3, num_train=256, eval_examples=4),
}


def setup_for(variant: str, steps: int | None = None) -> Setup:
  setup = SETUPS[variant]
  return setup if steps is None else dataclasses.replace(setup, steps=steps)


def run_config(task: str, setup: Setup, variant: str, pe: str, impl: str, randomized: int) -> dict:
  """configs/length_tasks.py at the study's sizes with encoding `pe`, core `impl` and randomized positions."""
  config = config_for(length_tasks, task, variant, task={"max_length": setup.train_length,
                                                         "num_train": setup.num_train},
                      optimizer={"learning_rate": setup.learning_rate},
                      train={"steps": setup.steps, "batch_size": setup.batch, "checkpoint_every": 0,
                             "eval_every": 0, "eval_batches": 1, "log_every": max(1, setup.steps // 10)})
  config["model"] = merge(config["model"], dict(
      num_layers=setup.num_layers, d_model=setup.d_model, attention={"num_heads": setup.num_heads, "impl": impl},
      mlp={"dim": 4 * setup.d_model}, positional={"name": pe, "options": {}, "randomized_positions": randomized}))
  return config


def probe_batch(task: LengthTask, n: int, count: int, seed: int, depth: int | None = None) -> dict[str, np.ndarray]:
  """`count` examples of input length n (passkey: with the key at task.depths[depth]), stacked [count, tape]."""
  examples = []
  for i in range(count):
    rng = np.random.default_rng([seed, TEST_SPLIT, n, 0 if depth is None else depth + 1, i])
    examples.append(task.sample(rng, n) if depth is None else task.sample(rng, n, task.depths[depth]))
  return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


@nnx.jit
def predict(model: nnx.Module, tokens: jax.Array) -> jax.Array:  # [count, tape] -> [count, tape] class ids
  return model(tokens).argmax(-1)


def accuracy(model: nnx.Module, batch: dict[str, np.ndarray]) -> float:
  """The mean over examples of the share of scored (answer) positions the model gets right; the model reads
  TEST_BATCH examples at a time (at 1500 tokens a softmax core's scores would not fit all at once)."""
  inputs = batch["inputs"]
  predicted = np.concatenate([np.asarray(predict(model, jax.numpy.asarray(inputs[i:i + TEST_BATCH])))
                              for i in range(0, inputs.shape[0], TEST_BATCH)])
  correct = (predicted == batch["targets"]) * batch["weights"]
  return float(np.mean(correct.sum(-1) / batch["weights"].sum(-1)))


@register("length_tasks")
class LengthTasks(Experiment):
  takes = ("task", "attention_impl", "encodings", "steps", "seeds")

  def runs(self, variant: str, options: Options = Options()) -> list[Run]:
    setup = setup_for(variant, options.steps)
    impl = options.attention_impl or "xla"
    task = tasks.build(options.task, {"max_length": setup.train_length})
    longest = task.total_length(max(setup.eval_lengths))
    names = options.encodings or DEFAULT_ENCODINGS["linear" if impl == "linear" else "softmax"]
    runs = []
    for name in names:
      pe, _, extra = name.partition("+")
      labels = {"task": options.task, "encoding": name, "attention_impl": impl, "train_length": setup.train_length,
                "steps": setup.steps, "eval_lengths": list(setup.eval_lengths), "buckets": list(setup.buckets),
                "eval_examples": setup.eval_examples}
      runs.append(Run(name, labels, run_config(options.task, setup, variant, pe, impl, longest if extra else 0)))
    return runs

  def check(self, options: Options) -> str | None:
    names = [n for n in tasks.available() if issubclass(tasks.get(n), LengthTask)]
    if not options.task:
      return f"give --task, one of: {', '.join(names)}"
    if options.task not in names:
      return f"unknown task {options.task!r}; valid choices: {', '.join(names)}"
    impl = options.attention_impl or "xla"
    if impl not in attention.available():
      return f"unknown attention_impl {impl!r}; valid choices: {', '.join(attention.available())}"
    for name in options.encodings:
      pe, plus, extra = name.partition("+")
      if pe not in positional.available() or (plus and extra != RANDOMIZED):
        return (f"unknown encoding {name!r}; valid choices: an encoding ({', '.join(positional.available())}), "
                f"optionally +{RANDOMIZED}")
      if reason := incompatibility(pe, impl):
        return reason
    return None

  def row(self, run: Run, summary: dict, workdir: pathlib.Path) -> dict:
    del summary
    task = tasks.build(run.labels["task"], {k: v for k, v in run.config["task"].items() if k != "name"})
    lengths, count, seed = run.labels["eval_lengths"], run.labels["eval_examples"], task.options.seed
    longest = task.total_length(max(lengths))
    core = "chunked" if run.labels["attention_impl"] == "xla" else run.labels["attention_impl"]  # O(L) memory
    model = trained_model(workdir, task.family, **{**task.model_fields(), "max_length": longest,
                                                   "attention": {"impl": core}})
    model.eval()
    row = {"chance": 1 / task.num_classes, "accuracy": [accuracy(model, probe_batch(task, n, count, seed))
                                                        for n in lengths]}
    if task.depths:  # by depth: the same lengths, the key at each depth of the grid
      row["depths"] = list(task.depths)
      row["accuracy_by_depth"] = [[accuracy(model, probe_batch(task, n, count, seed, d)) for n in lengths]
                                  for d in range(len(task.depths))]
    return row

  def markdown(self, rows: list[dict], variant: str) -> str:
    first = rows[0]
    buckets = bucket_edges(first)
    groups = group_rows(rows, ("encoding",))  # one row per seed
    names = [f"≤ {hi} (train)" if lo == 0 else f"{lo + 1}–{hi}" for lo, hi in buckets]
    lines = [f"Task {first['task']}: accuracy (share of output symbols right; chance {first['chance']:.2f}) by test "
             f"length, mean over each bucket; trained on lengths ≤ {first['train_length']} for {first['steps']} "
             f"steps, attention_impl={first['attention_impl']} ({variant} run).", "",
             f"| encoding | {' | '.join(names)} | s (train + test) |", "|" + "---|" * (len(names) + 2)]
    lines[0] += seeds_note(groups, "; s: the mean")
    for (name,), group in groups.items():
      cells = [mean_std([bucket_mean(r["accuracy"], r["eval_lengths"], lo, hi) for r in group]) for lo, hi in buckets]
      lines.append(f"| {name} | {' | '.join(cells)} | {np.mean([r['seconds'] for r in group]):.0f} |")
    if "depths" in first:
      lines += ["", f"By depth of the key, mean over test lengths > {first['train_length']}:", "",
                f"| encoding | {' | '.join(f'depth {d:g}' for d in first['depths'])} |",
                "|" + "---|" * (len(first["depths"]) + 1)]
      for (name,), group in groups.items():
        cells = [mean_std([beyond_training(r, d) for r in group]) for d in range(len(first["depths"]))]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"

  def plots(self, rows: list[dict], out: pathlib.Path, variant: str) -> list[pathlib.Path]:
    plt = pyplot()
    first = rows[0]
    groups = group_rows(rows, ("encoding",))  # one row per seed
    panels = 2 if "depths" in first else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.5), dpi=100, squeeze=False)
    ax = axes[0, 0]
    for i, ((name,), group) in enumerate(groups.items()):  # the 10 default colours, then again dashed; mean over seeds
      ax.plot(first["eval_lengths"], np.mean([r["accuracy"] for r in group], axis=0), marker="o",
              linestyle="-" if i < 10 else "--", label=name)
    ax.axvline(first["train_length"], color="gray", linestyle=":", linewidth=1)
    ax.axhline(first["chance"], color="black", linestyle="--", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("test input length; dotted: longest training length")
    ax.set_ylabel("accuracy (output symbols right)" + (", mean over seeds" if len(rows) > len(groups) else ""))
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{first['task']}, attention_impl={first['attention_impl']} ({variant} run)")
    ax.legend(fontsize=8, ncol=2)
    if panels == 2:
      ax = axes[0, 1]
      for (name,), group in groups.items():
        ax.plot(first["depths"], [np.mean([beyond_training(r, d) for r in group]) for d in range(len(first["depths"]))],
                marker="o", label=name)
      ax.axhline(first["chance"], color="black", linestyle="--", linewidth=1)
      ax.set_xlabel("depth of the key (0: start, 1: end of the filler)")
      ax.set_ylabel(f"accuracy, lengths > {first['train_length']}")
      ax.set_ylim(0, 1.02)
    return [save(fig, out / f"{variant}.png")]


def beyond_training(row: dict, depth: int) -> float:
  """Passkey's accuracy with the key at depths[depth], mean over the test lengths past the training length."""
  lengths = row["eval_lengths"]
  return bucket_mean(row["accuracy_by_depth"][depth], lengths, row["train_length"], max(lengths))


def bucket_edges(row: dict) -> list[tuple[int, int]]:
  """(lo, hi] per bucket of the row; the first is (0, L]."""
  return list(zip((0, *row["buckets"][:-1]), row["buckets"]))


def bucket_mean(values: list[float], lengths: list[int], lo: int, hi: int) -> float:
  return float(np.mean([v for v, n in zip(values, lengths) if lo < n <= hi]))
