"""Time and compiled memory of one causal attention layer with sineSPE: linear attention (FAVOR+) against softmax.

  python -m launch.bench_linear [--lengths 1024,2048,4096,8192,16384] [--repeats 5] [--softmax-max-length 8192]

Prints one JSON object per (impl, length) — compile seconds, min and median forward seconds over the repeats
(the two implementations interleaved, so load from other processes hits both alike), and the compiled memory — then
one object per impl with the exponent of a least-squares fit of log(median time) on log(length).

Memory is XLA's `memory_analysis()` of the compiled forward (arguments + outputs + temporaries). On CPU, jax fuses a
whole attention into one YNNPACK fusion whose buffers it does not count, so this script turns that fusion off
(`XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=`) unless XLA_FLAGS is already set. Softmax beyond
`--softmax-max-length` is compiled for its memory but not run (a 16k × 16k float32 attention needs GiBs per head).
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from zoo import positional  # noqa: E402
from zoo.nn import AttentionOptions, CallContext, SelfAttention  # noqa: E402

IMPLS = {"linear": "linear", "softmax": "xla"}


def build_layer(impl: str, args) -> SelfAttention:
  dims = positional.ModelDims(num_heads=args.heads, head_dim=args.head_dim, d_model=args.d_model,
                              max_length=max(args.lengths), causal=True)
  rngs = nnx.Rngs(params=0)
  with nnx.use_eager_sharding(False):
    encoding = positional.build("spe_sine", {"num_realizations": args.realizations}, dims, rngs=rngs)
    options = AttentionOptions(num_heads=args.heads, head_dim=args.head_dim, causal=True, impl=IMPLS[impl],
                               num_features=args.features)
    layer = SelfAttention(args.d_model, options, encoding=encoding, rngs=rngs)
  layer.eval()  # fixed SPE noise and random features: every repeat computes the same thing
  return layer


def compile_forward(layer: SelfAttention, length: int, args):
  graphdef, state = nnx.split(layer)

  def forward(state, x, positions):
    return nnx.merge(graphdef, state)(x, CallContext(positions))[0]  # [batch, length, d_model]

  x = jax.random.normal(jax.random.key(1), (args.batch, length, args.d_model))
  positions = jnp.broadcast_to(jnp.arange(length), (args.batch, length))
  start = time.perf_counter()
  compiled = jax.jit(forward).lower(state, x, positions).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  mib = lambda n: round(n / 2 ** 20, 2)
  record = dict(compile_s=round(compile_s, 3), temp_mib=mib(memory.temp_size_in_bytes),
                peak_mib=mib(memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes))
  return (lambda: compiled(state, x, positions).block_until_ready()), record


def fit_exponent(lengths, seconds) -> float:
  """The slope of log(seconds) against log(length): time ∝ length^slope."""
  return float(np.polyfit(np.log(lengths), np.log(seconds), 1)[0])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--lengths", default="1024,2048,4096,8192,16384")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--impls", default="linear,softmax")
  parser.add_argument("--softmax-max-length", type=int, default=8192, help="longer softmax runs are compile-only")
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--d-model", type=int, default=128)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--head-dim", type=int, default=32)
  parser.add_argument("--realizations", type=int, default=32, help="SPE R: the feature size of q̂ and k̂")
  parser.add_argument("--features", type=int, default=64, help="FAVOR+ random features")
  args = parser.parse_args()
  args.lengths = [int(n) for n in args.lengths.split(",")]
  impls = args.impls.split(",")
  medians = {impl: {} for impl in impls}
  for length in args.lengths:
    runs, records, times = {}, {}, {}
    for impl in impls:
      run, records[impl] = compile_forward(build_layer(impl, args), length, args)
      timed = impl != "softmax" or length <= args.softmax_max_length
      if timed:
        run()  # warm-up
        runs[impl], times[impl] = run, []
    for _ in range(args.repeats):
      for impl, run in runs.items():
        start = time.perf_counter()
        run()
        times[impl].append(time.perf_counter() - start)
    for impl in impls:
      record = dict(impl=impl, pe="spe_sine", length=length, batch=args.batch, heads=args.heads,
                    head_dim=args.head_dim, realizations=args.realizations, **records[impl])
      if impl == "linear":
        record["features"] = args.features
      if impl in times:
        record.update(min_s=round(min(times[impl]), 5), median_s=round(statistics.median(times[impl]), 5),
                      repeats=args.repeats)
        medians[impl][length] = statistics.median(times[impl])
      else:
        record["note"] = f"compile only (timed up to --softmax-max-length {args.softmax_max_length})"
      print(json.dumps(record), flush=True)
  for impl, by_length in medians.items():
    if len(by_length) >= 2:
      print(json.dumps(dict(impl=impl, fit="median_s ∝ length^exponent", lengths=sorted(by_length),
                            exponent=round(fit_exponent(sorted(by_length), [by_length[n] for n in sorted(by_length)]),
                                           3), xla_flags=os.environ.get("XLA_FLAGS", ""))), flush=True)


if __name__ == "__main__":
  main()
