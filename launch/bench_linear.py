"""Time and compiled memory of one causal attention layer with sineSPE: linear attention (FAVOR+) against softmax.

  python -m launch.bench_linear [--lengths=1024,2048,4096,8192,16384] [--repeats=5] [--softmax_max_length=8192]

Prints one JSON object per (impl, length) — compile seconds, min and median forward seconds over the repeats
(the two implementations interleaved, so load from other processes hits both alike), and the compiled memory — then
one object per impl with the exponent of a least-squares fit of log(median time) on log(length).

Memory is XLA's `memory_analysis()` of the compiled forward (arguments + outputs + temporaries). On CPU, jax fuses a
whole attention into one YNNPACK fusion whose buffers it does not count, so this script turns that fusion off
(`XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=`) unless XLA_FLAGS is already set. Softmax beyond
`--softmax_max_length` is compiled for its memory but not run (a 16k × 16k float32 attention needs GiBs per head).
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402
from flax import nnx  # noqa: E402

from launch import jsonl, timing  # noqa: E402
from launch.cli import define_list, positive_int, run  # noqa: E402
from zoo import positional  # noqa: E402
from zoo.nn import AttentionConfig, CallContext, SelfAttention  # noqa: E402

IMPLS = {"linear": "linear", "softmax": "xla"}

_LENGTHS = define_list("lengths", "1024,2048,4096,8192,16384", "sequence lengths", positive_int)
_REPEATS = timing.define_repeats_flag(5)
_IMPLS = define_list("impls", "linear,softmax", "attention implementations", choices=IMPLS)
_SOFTMAX_MAX_LENGTH = flags.DEFINE_integer("softmax_max_length", 8192, "longer softmax runs are compile-only")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 1, "sequences per forward pass", lower_bound=1)
_D_MODEL = flags.DEFINE_integer("d_model", 128, "model width", lower_bound=1)
_NUM_HEADS = flags.DEFINE_integer("num_heads", 4, "attention heads", lower_bound=1)
_HEAD_DIM = flags.DEFINE_integer("head_dim", 32, "width of each head", lower_bound=1)
_NUM_REALIZATIONS = flags.DEFINE_integer("num_realizations", 32, "SPE R: the feature size of q̂ and k̂",
                                         lower_bound=1)
_NUM_FEATURES = flags.DEFINE_integer("num_features", 64, "FAVOR+ random features", lower_bound=1)
_OUT = jsonl.define_out_flag()


def build_layer(impl: str) -> SelfAttention:
  dims = positional.ModelDims(num_heads=_NUM_HEADS.value, head_dim=_HEAD_DIM.value, d_model=_D_MODEL.value,
                              max_length=max(_LENGTHS.value), causal=True)
  rngs = nnx.Rngs(params=0)
  with nnx.use_eager_sharding(False):
    encoding = positional.build("spe_sine", {"num_realizations": _NUM_REALIZATIONS.value}, dims, rngs=rngs)
    config = AttentionConfig(num_heads=_NUM_HEADS.value, head_dim=_HEAD_DIM.value, impl=IMPLS[impl],
                             core={"num_features": _NUM_FEATURES.value} if IMPLS[impl] == "linear" else {})
    layer = SelfAttention(_D_MODEL.value, config, causal=True, encoding=encoding, rngs=rngs)
  layer.eval()  # fixed SPE noise and random features: every repeat computes the same thing
  return layer


def compile_forward(layer: SelfAttention, length: int):
  graphdef, state = nnx.split(layer)

  def forward(state, x, positions):
    return nnx.merge(graphdef, state)(x, CallContext(positions))[0]  # [batch, length, d_model]

  x = jax.random.normal(jax.random.key(1), (_BATCH_SIZE.value, length, _D_MODEL.value))
  positions = jnp.broadcast_to(jnp.arange(length), (_BATCH_SIZE.value, length))
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
  impls = _IMPLS.value
  medians = {impl: {} for impl in impls}
  with jsonl.writer(_OUT.value) as emit:
    for length in _LENGTHS.value:
      runs, records = {}, {}
      for impl in impls:
        run, records[impl] = compile_forward(build_layer(impl), length)
        if impl != "softmax" or length <= _SOFTMAX_MAX_LENGTH.value:
          run()  # warm-up
          runs[impl] = run
      times = timing.interleaved(runs, _REPEATS.value)
      for impl in impls:
        record = dict(impl=impl, pe="spe_sine", length=length, batch=_BATCH_SIZE.value, heads=_NUM_HEADS.value,
                      head_dim=_HEAD_DIM.value, realizations=_NUM_REALIZATIONS.value, **records[impl])
        if impl == "linear":
          record["features"] = _NUM_FEATURES.value
        if impl in times:
          min_s, median_s = timing.min_median(times[impl], 5)
          record.update(min_s=min_s, median_s=median_s, repeats=_REPEATS.value)
          medians[impl][length] = statistics.median(times[impl])
        else:
          record["note"] = f"compile only (timed up to --softmax_max_length {_SOFTMAX_MAX_LENGTH.value})"
        emit(record)
    for impl, by_length in medians.items():
      if len(by_length) >= 2:
        lengths = sorted(by_length)
        emit(dict(impl=impl, fit="median_s ∝ length^exponent", lengths=lengths,
                  exponent=round(fit_exponent(lengths, [by_length[n] for n in lengths]), 3),
                  xla_flags=os.environ.get("XLA_FLAGS", "")))


if __name__ == "__main__":
  run(main)
