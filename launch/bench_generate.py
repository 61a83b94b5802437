"""Per-token time of cached decoding against recomputing the whole prefix, at several positions, as JSON lines.

  python -m launch.bench_generate [--positions=512,2048,8192] [--repeats=3] [--out=rows.jsonl]

For each attention kind — softmax (a KV cache: the new token attends to `position` cached keys) and linear attention
(FAVOR+; its cache is the recurrent state, whose cost does not grow with the prefix) — and each position p, two
jitted programs of one decoder are timed, interleaved so load from other processes hits both alike:

* cached: `Decoder.extend` of one token into a cache that holds p tokens (cache length p + 1), the cache donated
  (written in place, as in `generate`'s decoding loop; each repeat rewrites slot p);
* full: the decoder's forward over all p + 1 tokens, the logits of the last one being the next-token prediction.

The cache's contents do not change the work (the token attends to every slot below its index), so the cache is
an empty one with its index set to p rather than a p-token prefill. One row per (attention, position): compile
seconds, min and median seconds of each over `--repeats` runs after a warm-up, and full / cached (of the medians).
The model is CPU-sized (`--d_model`, `--num_layers`, `--num_heads`; RoPE); times are this machine's, which may be
shared.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import flags  # noqa: E402
from flax import nnx  # noqa: E402

from launch import jsonl, timing  # noqa: E402
from launch.cli import define_list, positive_int, run  # noqa: E402
from zoo import attention, models  # noqa: E402

ATTENTION = {"softmax": "xla", "linear": "linear"}  # attention kind -> model.attention.impl

_POSITIONS = define_list("positions", "512,2048,8192", "prefix lengths p: the new token is the (p + 1)-th",
                         positive_int)
_ATTENTION = define_list("attention", "softmax,linear", "attention kinds", choices=ATTENTION)
_SOFTMAX_IMPL = flags.DEFINE_enum("softmax_impl", "xla", attention.available(),
                                  "model.attention.impl of the softmax rows")
_REPEATS = timing.define_repeats_flag(3)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 1, "sequences decoded at once", lower_bound=1)
_NUM_LAYERS = flags.DEFINE_integer("num_layers", 4, "decoder layers", lower_bound=1)
_D_MODEL = flags.DEFINE_integer("d_model", 256, "model width", lower_bound=1)
_NUM_HEADS = flags.DEFINE_integer("num_heads", 4, "attention heads", lower_bound=1)
_NUM_FEATURES = flags.DEFINE_integer("num_features", 64, "FAVOR+ random features (linear attention)", lower_bound=1)
_SCAN_LAYERS = flags.DEFINE_bool("scan_layers", False, "the model with model.scan_layers")
_OUT = jsonl.define_out_flag()


def impl_of(kind: str) -> str:
  return _SOFTMAX_IMPL.value if kind == "softmax" else ATTENTION[kind]


def programs(kind: str, position: int):
  """(cached step, full recompute, compile seconds of each) for a decoder at `position`."""
  batch = _BATCH_SIZE.value
  core = {"num_features": _NUM_FEATURES.value} if kind == "linear" else {}
  config = dict(vocab_size=256, num_layers=_NUM_LAYERS.value, d_model=_D_MODEL.value, max_length=position + 1,
                attention=dict(num_heads=_NUM_HEADS.value, impl=impl_of(kind), core=core),
                positional=dict(name="rope"), scan_layers=_SCAN_LAYERS.value)
  model = models.build("decoder", config)
  model.eval()  # no dropout; linear attention's random features fixed
  graphdef, state = nnx.split(model)
  tokens = jax.random.randint(jax.random.key(0), (batch, position + 1), 0, 256)  # [batch, p + 1]
  cache = model.init_cache(batch, position + 1)
  cache = cache.replace(index=jnp.full((batch,), position, jnp.int32))  # p tokens held

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


def measure(kind: str, position: int) -> dict:
  (cached, full), (cached_compile_s, full_compile_s) = programs(kind, position)
  cached(), full()  # warm-up
  times = timing.interleaved({"cached": cached, "full": full}, _REPEATS.value)
  row = dict(attention=kind, impl=impl_of(kind), position=position, batch=_BATCH_SIZE.value,
             layers=_NUM_LAYERS.value, d_model=_D_MODEL.value, heads=_NUM_HEADS.value, scan_layers=_SCAN_LAYERS.value,
             repeats=_REPEATS.value, cached_compile_s=cached_compile_s, full_compile_s=full_compile_s)
  for name, values in times.items():
    row.update(zip((f"{name}_min_s", f"{name}_median_s"), timing.min_median(values, 6)))
  row["full_over_cached"] = round(row["full_median_s"] / row["cached_median_s"], 1)
  return row


def main() -> None:
  with jsonl.writer(_OUT.value) as emit:
    for kind in _ATTENTION.value:
      for position in _POSITIONS.value:
        emit(measure(kind, position))


if __name__ == "__main__":
  run(main)
