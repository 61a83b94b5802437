"""Per-token time of cached decoding against recomputing the whole prefix, at several positions, as JSON lines.

  python -m launch.bench_generate [--positions 512,2048,8192] [--repeats 3] [--out rows.jsonl]

For each attention kind — softmax (a KV cache: the new token attends to `position` cached keys) and linear attention
(FAVOR+; its cache is the recurrent state, whose cost does not grow with the prefix) — and each position p, two
jitted programs of one decoder are timed, interleaved so load from other processes hits both alike:

* cached: `Decoder.extend` of one token into a cache that holds p tokens (cache length p + 1), the cache donated
  (written in place, as in `generate`'s decoding loop; each repeat rewrites slot p);
* full: the decoder's forward over all p + 1 tokens, the logits of the last one being the next-token prediction.

The cache's contents do not change the work (the token attends to every slot below its index), so the cache is
an empty one with its index set to p rather than a p-token prefill. One row per (attention, position): compile
seconds, min and median seconds of each over `--repeats` runs after a warm-up, and full / cached (of the medians).
The model is CPU-sized (`--d-model`, `--layers`, `--heads`; RoPE); times are this machine's, which may be shared.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import contextlib  # noqa: E402
from launch.jsonl import emit  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from zoo import models  # noqa: E402

ATTENTION = {"softmax": "xla", "linear": "linear"}  # attention kind -> attention_impl


def programs(kind: str, position: int, args):
  """(cached step, full recompute, compile seconds of each) for a decoder at `position`."""
  config = dict(vocab_size=256, num_layers=args.layers, d_model=args.d_model, num_heads=args.heads, pe="rope",
                max_length=position + 1, attention_impl=args.softmax_impl if kind == "softmax" else ATTENTION[kind],
                scan_layers=args.scan_layers)
  if kind == "linear":
    config["num_features"] = args.features
  model = models.build("decoder", config)
  model.eval()  # no dropout; linear attention's random features fixed
  graphdef, state = nnx.split(model)
  tokens = jax.random.randint(jax.random.key(0), (args.batch, position + 1), 0, 256)  # [batch, p + 1]
  cache = model.init_cache(args.batch, position + 1)
  cache = cache.replace(index=jnp.full((args.batch,), position, jnp.int32))  # p tokens held

  def step(state, token, cache):  # one token at position p -> logits [batch, vocab], the cache (same index)
    logits, new_cache = nnx.merge(graphdef, state).extend(token, cache)
    return logits[:, -1], new_cache.replace(index=cache.index)

  def full(state, tokens):  # all p + 1 tokens -> the last one's logits [batch, vocab]
    return nnx.merge(graphdef, state)(tokens)[:, -1]

  def compile_timed(fn, *inputs, donate=()):
    start = time.perf_counter()
    program = jax.jit(fn, donate_argnums=donate).lower(*inputs).compile()
    return program, round(time.perf_counter() - start, 3)

  cached_step, cached_compile_s = compile_timed(step, state, tokens[:, -1:], cache, donate=(2,))
  full_program, full_compile_s = compile_timed(full, state, tokens)
  caches = [cache]

  def run_cached():  # the cache is donated, as in `generate`'s decoding loop, so XLA writes its slot in place
    logits, new_cache = cached_step(state, tokens[:, -1:], caches.pop())
    caches.append(new_cache)
    logits.block_until_ready()

  return (run_cached, lambda: full_program(state, tokens).block_until_ready()), (cached_compile_s, full_compile_s)


def measure(kind: str, position: int, args) -> dict:
  (cached, full), (cached_compile_s, full_compile_s) = programs(kind, position, args)
  cached(), full()  # warm-up
  times = {"cached": [], "full": []}
  for _ in range(args.repeats):
    for name, run in (("cached", cached), ("full", full)):
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  row = dict(attention=kind, impl=args.softmax_impl if kind == "softmax" else ATTENTION[kind], position=position,
             batch=args.batch, layers=args.layers, d_model=args.d_model, heads=args.heads,
             scan_layers=args.scan_layers, repeats=args.repeats, cached_compile_s=cached_compile_s,
             full_compile_s=full_compile_s)
  for name, values in times.items():
    row.update({f"{name}_min_s": round(min(values), 6), f"{name}_median_s": round(statistics.median(values), 6)})
  row["full_over_cached"] = round(row["full_median_s"] / row["cached_median_s"], 1)
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--positions", default="512,2048,8192")
  parser.add_argument("--attention", default="softmax,linear", help="comma-separated: softmax, linear")
  parser.add_argument("--softmax-impl", default="xla", help="attention_impl of the softmax rows (xla, chunked, ...)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--d-model", type=int, default=256)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--features", type=int, default=64, help="FAVOR+ random features (linear attention)")
  parser.add_argument("--scan-layers", action="store_true", help="the model with model.scan_layers")
  parser.add_argument("--out", default="", help="also append the JSON lines to this file")
  args = parser.parse_args()
  with open(args.out, "a") if args.out else contextlib.nullcontext() as out:
    for kind in args.attention.split(","):
      for position in (int(p) for p in args.positions.split(",")):
        emit(measure(kind, position, args), out)


if __name__ == "__main__":
  main()
