r"""Train short, evaluate long (Press et al. 2022, Fig. 1): one byte-level decoder per positional encoding, trained at
length L, evaluated at 1×, 2×, 4×, 8× and 16× L.

  python -m launch.extrapolate --quick                          # minutes on a laptop CPU
  python -m launch.extrapolate --encodings=rope,alibi,fire      # the full (CPU-sized) run for some encodings
  python -m launch.extrapolate --encodings=rope,rope+yarn       # RoPE, and RoPE scaled by YaRN after a fine-tune

Every encoding gets the same architecture, data, seed and number of steps. The corpus is the Python standard
library's source (bytes, so no download; every 20th file is held out for evaluation, as in the `byte_lm` task).
Evaluation runs the chunked attention core (O(L) memory) over the same held-out bytes at every length, cut into
non-overlapping windows of that length, and reports the mean next-byte loss (nats) over all positions of all
windows (so a longer window differs only in how much context its later bytes see). `rope+<scaling>` (linear, ntk,
yarn) takes the trained RoPE model, sets RoPE's `scaling` with factor 4 for contexts of 4 L, fine-tunes it for
`finetune_steps` at 2 L and evaluates it like the others (the papers' recipe: a short fine-tune at the longer
length).

Writes <out>/<variant>.jsonl (one line per encoding × length), <variant>.md (a table) and <variant>.png (loss vs
evaluation length, one line per encoding), variant = "quick" or "full". Needs matplotlib for the plot
(`pip install -e ".[plot]"`; the test extra includes it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import sysconfig
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from zoo import models, positional
from zoo.data.tasks.byte_lm import VALIDATION_EVERY, corpus_files

MULTIPLES = (1, 2, 4, 8, 16)
DEFAULT_ENCODINGS = ("sinusoidal", "learned", "rope", "xpos", "alibi", "kerple_log", "kerple_power", "sandwich",
                     "fire", "cope", "t5_bias", "rope+yarn")
SCALINGS = ("linear", "ntk", "yarn")
SCALING_FACTOR = 4


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


FULL = Setup(length=64, steps=1500, batch=16, d_model=128, num_layers=3, num_heads=4, learning_rate=2e-3,
             eval_windows=16, finetune_steps=150, max_files=400)
QUICK = Setup(length=32, steps=400, batch=16, d_model=64, num_layers=2, num_heads=4, learning_rate=3e-3,
              eval_windows=8, finetune_steps=40, max_files=60)


def corpus(max_files: int) -> tuple[np.ndarray, np.ndarray]:
  """(train bytes, held-out bytes) as int32 arrays: the standard library's *.py files, every 20th held out."""
  files = corpus_files(sysconfig.get_paths()["stdlib"], "*.py", max_files)
  read = lambda keep: np.frombuffer(b"".join(p.read_bytes() for k, p in enumerate(files) if keep(k)), np.uint8)
  return (read(lambda k: k % VALIDATION_EVERY != 0).astype(np.int32),
          read(lambda k: k % VALIDATION_EVERY == 0).astype(np.int32))


def check_encodings(names: list[str]) -> None:
  valid = [*positional.available(), *(f"rope+{s}" for s in SCALINGS)]
  for name in names:
    if name not in valid:
      raise ValueError(f"unknown encoding {name!r}; valid choices: {', '.join(valid)}")


def build(setup: Setup, pe: str, pe_options=None) -> nnx.Module:
  return models.build("decoder", dict(vocab_size=256, num_layers=setup.num_layers, d_model=setup.d_model,
                                      num_heads=setup.num_heads, max_length=setup.length * max(MULTIPLES), pe=pe,
                                      pe_options=pe_options or {}, attention_impl="chunked"), seed=0)


def train(model: nnx.Module, data: np.ndarray, setup: Setup, steps: int, length: int, seed: int) -> float:
  """Adam (cosine decay) on random windows of `length` + 1 bytes; returns the mean loss of the last 10 % of steps.
  The windows depend only on `seed`, so every encoding sees the same bytes."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adamw(optax.cosine_decay_schedule(setup.learning_rate, steps), weight_decay=0.01)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, rest, opt_state, tokens):
    def loss_fn(params):
      model = nnx.merge(graphdef, params, rest, copy=True)
      logits = model(tokens[:, :-1])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
      return loss, nnx.state(model, nnx.Not(nnx.Param))
    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), rest, opt_state, loss

  rng = np.random.default_rng(seed)
  losses = []
  for _ in range(steps):
    starts = rng.integers(0, data.shape[0] - length - 1, setup.batch)
    tokens = jnp.asarray(np.stack([data[s:s + length + 1] for s in starts]))
    params, rest, opt_state, loss = step(params, rest, opt_state, tokens)
    losses.append(float(loss))
  nnx.update(model, params, rest)
  return float(np.mean(losses[-max(1, steps // 10):]))


def evaluate(model: nnx.Module, held_out: np.ndarray, setup: Setup) -> dict[int, float]:
  """{multiple: mean next-byte loss} over the first eval_windows × 16 L held-out bytes, cut into non-overlapping
  windows of multiple × L bytes (each window also reads the byte after it, its last target)."""
  model.eval()
  loss_fn = nnx.jit(lambda m, t: optax.softmax_cross_entropy_with_integer_labels(m(t[:, :-1]), t[:, 1:]).mean())
  total = setup.eval_windows * max(MULTIPLES) * setup.length
  out = {}
  for multiple in MULTIPLES:
    length = multiple * setup.length
    starts = np.arange(0, total, length)
    windows = np.stack([held_out[s:s + length + 1] for s in starts])
    out[multiple] = float(loss_fn(model, jnp.asarray(windows)))
  model.train()
  return out


def run_encoding(name: str, setup: Setup, data: np.ndarray, held_out: np.ndarray, trained: dict) -> dict:
  """Trains (or, for rope+<scaling>, fine-tunes the trained RoPE model) and evaluates one encoding."""
  start = time.time()
  if "+" in name:
    base, scaling = name.split("+")
    if base not in trained:
      trained[base] = build(setup, base)
      train(trained[base], data, setup, setup.steps, setup.length, seed=0)
    options = {"scaling": scaling, "factor": SCALING_FACTOR, "original_length": setup.length}
    model = build(setup, base, options)
    nnx.update(model, nnx.state(trained[base], nnx.Param))
    train_loss = train(model, data, setup, setup.finetune_steps, 2 * setup.length, seed=1)
  else:
    model = build(setup, name)
    train_loss = train(model, data, setup, setup.steps, setup.length, seed=0)
    trained[name] = model
  losses = evaluate(model, held_out, setup)
  return {"encoding": name, "train_loss": train_loss, "losses": losses, "seconds": time.time() - start}


def markdown(results: list[dict], setup: Setup, variant: str) -> str:
  columns = " | ".join(f"{m}× ({m * setup.length})" for m in MULTIPLES)
  header = f"| encoding | {columns} | s (train + eval) |"
  lines = [f"Next-byte loss (nats) on held-out Python source, trained at L = {setup.length} for {setup.steps} steps "
           f"({variant} run; rope+<scaling>: + {setup.finetune_steps} fine-tune steps at 2 L).", "", header,
           "|" + "---|" * (len(MULTIPLES) + 2)]
  for r in results:
    cells = " | ".join(f"{r['losses'][m]:.3f}" for m in MULTIPLES)
    lines.append(f"| {r['encoding']} | {cells} | {r['seconds']:.0f} |")
  return "\n".join(lines) + "\n"


def plot(results: list[dict], setup: Setup, path: pathlib.Path, variant: str) -> None:
  import matplotlib  # noqa: PLC0415 — only the plot needs it

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # noqa: PLC0415

  fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
  lengths = [m * setup.length for m in MULTIPLES]
  for i, r in enumerate(results):  # the 10 default colours, then again dashed
    ax.plot(lengths, [r["losses"][m] for m in MULTIPLES], marker="o", linestyle="-" if i < 10 else "--",
            label=r["encoding"])
  ax.axvline(setup.length, color="gray", linestyle=":", linewidth=1)
  ax.set_xscale("log", base=2)
  ax.set_xticks(lengths, [str(n) for n in lengths])
  ax.set_xlabel("evaluation length (bytes); dotted: training length")
  ax.set_ylabel("next-byte loss (nats)")
  ax.set_title(f"Train at {setup.length}, evaluate longer ({variant} run)")
  ax.legend(fontsize=8, ncol=2)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--encodings", default=",".join(DEFAULT_ENCODINGS),
                      help="comma-separated encoding names; rope+linear / rope+ntk / rope+yarn for scaled RoPE")
  parser.add_argument("--quick", action="store_true", help="a small model and few steps: a run of minutes")
  parser.add_argument("--out", default="results/extrapolate", help="directory for the JSONL, table and plot")
  parser.add_argument("--steps", type=int, default=None,
                      help="training steps instead of the variant's (rope+<scaling> fine-tunes for a tenth of them)")
  args = parser.parse_args(argv)
  names = [n for n in args.encodings.split(",") if n]
  try:
    check_encodings(names)
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  setup, variant = (QUICK, "quick") if args.quick else (FULL, "full")
  if args.steps is not None:
    if args.steps < 1:
      print(f"error: --steps must be >= 1, got {args.steps}", file=sys.stderr)
      return 2
    setup = dataclasses.replace(setup, steps=args.steps, finetune_steps=max(1, args.steps // 10))
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  data, held_out = corpus(setup.max_files)
  results, trained = [], {}
  with (out / f"{variant}.jsonl").open("w") as jsonl:
    for name in names:
      result = run_encoding(name, setup, data, held_out, trained)
      results.append(result)
      for m in MULTIPLES:
        jsonl.write(json.dumps({"encoding": name, "variant": variant, "train_length": setup.length,
                                "eval_length": m * setup.length, "loss": result["losses"][m],
                                "train_loss": result["train_loss"], "seconds": round(result["seconds"], 1)}) + "\n")
      jsonl.flush()
      print(f"{name}: " + " ".join(f"{m}×={result['losses'][m]:.3f}" for m in MULTIPLES) +
            f" ({result['seconds']:.0f} s)", flush=True)
  (out / f"{variant}.md").write_text(markdown(results, setup, variant))
  plot(results, setup, out / f"{variant}.png", variant)
  return 0


if __name__ == "__main__":
  sys.exit(main())
