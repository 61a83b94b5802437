"""Train-step throughput of a zoo decoder against a minimal hand-written JAX decoder of the same configuration (and
x-transformers when torch is installed), the achieved FLOP/s against this machine's measured matmul peak, and the
compile time of the train step against depth with `model.scan_layers`.

  python -m launch.bench_train [--num_layers=6 --d_model=512 --num_heads=8 --batch_size=8 --length=512] [--repeats=3]
  python -m launch.bench_train --compile_only --compile_layers=2,24   # the compile-time rows alone

Rows (JSON lines):
* `{"row": "peak", ...}`: the best FLOP/s of a jitted float32 [n, n] @ [n, n] matmul (2n³ FLOPs) over the repeats.
* `{"row": "step", "impl": "zoo" | "minimal_jax" | "x_transformers", ...}`: tokens/s, min and median step seconds
  (the implementations interleaved, so load from other processes hits all alike) and, for the JAX programs, the
  compiled step's FLOPs (`cost_analysis()`), achieved FLOP/s (FLOPs / median) and its fraction of the peak.
  Both JAX programs are one `jax.jit` of loss, gradient and an AdamW update with the same width, depth, heads,
  pre-LN LayerNorm, exact GELU MLP, RoPE, causal softmax attention and tied embeddings, in float32.
  x-transformers (PyTorch, eager) is skipped, with a row saying so, when torch or x_transformers is missing.
  `malloc` records the glibc allocator variables the process ran with: a step allocates ~1 GB of temporaries, and
  with glibc's defaults every step faults them in as fresh pages (measured: writing a fresh 64 MiB array 38 ms, the
  same write into a reused buffer 6 ms), so `MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TOP_PAD_=1073741824
  MALLOC_TRIM_THRESHOLD_=68719476736`, which keep freed memory, speed up every implementation.
* `{"row": "compile", ...}`: seconds to lower and compile zoo's train step at each depth of `--compile_layers`,
  scanned and unscanned, and the scanned deepest / shallowest ratio.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import importlib.util  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from absl import flags  # noqa: E402

from launch import jsonl, timing  # noqa: E402
from launch.cli import define_list, positive_int, run  # noqa: E402
from zoo.positional import apply_rope  # noqa: E402
from zoo.train.mesh import batch_sharding, make_mesh  # noqa: E402
from zoo.train.step import compile_steps, make_program  # noqa: E402

VOCAB = 256
LEARNING_RATE = 1e-3

_NUM_LAYERS = flags.DEFINE_integer("num_layers", 6, "decoder layers", lower_bound=1)
_D_MODEL = flags.DEFINE_integer("d_model", 512, "model width", lower_bound=1)
_NUM_HEADS = flags.DEFINE_integer("num_heads", 8, "attention heads", lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "sequences per step", lower_bound=1)
_LENGTH = flags.DEFINE_integer("length", 512, "tokens per sequence", lower_bound=1)
_REPEATS = timing.define_repeats_flag(3)
_SCAN_LAYERS = flags.DEFINE_bool("scan_layers", False, "zoo's model with model.scan_layers")
_REMAT = flags.DEFINE_string("remat", "none", "zoo's model.remat")
_PEAK_SIZE = flags.DEFINE_integer("peak_size", 2048, "n of the n × n matmul that measures the peak", lower_bound=1)
_COMPILE_LAYERS = define_list("compile_layers", "2,24", "depths whose compile time is measured ('' = none)",
                              positive_int)
_COMPILE_ONLY = flags.DEFINE_bool("compile_only", False, "only the compile-time rows")
_OUT = jsonl.define_out_flag()


def matmul_peak(n: int, repeats: int) -> float:
  """FLOP/s of the fastest of `repeats` float32 [n, n] @ [n, n] products (after a warm-up)."""
  a = jax.random.normal(jax.random.key(0), (n, n))
  product = jax.jit(lambda a: a @ a)
  product(a).block_until_ready()
  best = min(timing.seconds(lambda: product(a).block_until_ready()) for _ in range(repeats))
  return 2 * n ** 3 / best


def glibc_malloc_settings() -> dict[str, str]:
  """The process's glibc allocator settings (MALLOC_* variables): on a CPU they move every implementation's step time
  (a step's large temporaries are fresh pages unless the allocator keeps freed memory), so each row records them."""
  return {name: value for name, value in sorted(os.environ.items()) if name.startswith("MALLOC_")}


def flops_of(compiled) -> float:
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return float(analysis.get("flops", 0.0))


def batch_of() -> dict[str, jax.Array]:
  tokens = jax.random.randint(jax.random.key(1), (_BATCH_SIZE.value, _LENGTH.value + 1), 0, VOCAB)
  return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}  # [batch, length] each


def zoo_step(layers: int, scan_layers: bool):
  """(run, compiled, lower + compile seconds) of zoo's own train step (zoo.train.step) on one device."""
  config = dict(vocab_size=VOCAB, num_layers=layers, d_model=_D_MODEL.value, max_length=_LENGTH.value,
                attention=dict(num_heads=_NUM_HEADS.value), positional=dict(name="rope"), scan_layers=scan_layers,
                remat=_REMAT.value)
  mesh = make_mesh((1, 1, 1), jax.devices()[:1])
  rules = (("batch", ("data", "fsdp")),)
  program, init = make_program("decoder", config, seed=0, tx=optax.adamw(LEARNING_RATE),
                               schedule=optax.constant_schedule(LEARNING_RATE), objective="next_token",
                               grad_accum_steps=1, mesh=mesh, rules=rules)
  batch = batch_of()
  train, _ = compile_steps(program, {name: batch_sharding(mesh, rules, 2) for name in batch})
  start = time.perf_counter()
  compiled = train.lower(program.abstract_state, batch).compile()
  compile_s = time.perf_counter() - start
  state = []

  def run():  # the step donates its state: keep the new one (the first call, a warm-up, creates it)
    new_state, metrics = compiled(state.pop() if state else init(), batch)
    state.append(new_state)
    jax.block_until_ready(metrics)

  return run, compiled, compile_s


def minimal_params(key) -> dict:
  """The hand-written decoder's parameters (same shapes and initialisers as zoo's)."""
  d, h, mlp, num_layers = _D_MODEL.value, _NUM_HEADS.value, 4 * _D_MODEL.value, _NUM_LAYERS.value
  lecun = jax.nn.initializers.lecun_normal()
  keys = iter(jax.random.split(key, 6 * num_layers + 1))
  layer = lambda: dict(ln1=(jnp.ones(d), jnp.zeros(d)), ln2=(jnp.ones(d), jnp.zeros(d)),
                       wq=lecun(next(keys), (d, h, d // h)), wk=lecun(next(keys), (d, h, d // h)),
                       wv=lecun(next(keys), (d, h, d // h)), wo=lecun(next(keys), (h * (d // h), d)),
                       wi=lecun(next(keys), (d, mlp)), wout=lecun(next(keys), (mlp, d)))
  return dict(embed=jax.random.normal(next(keys), (VOCAB, d)) * d ** -0.5, layers=[layer() for _ in range(num_layers)],
              ln_f=(jnp.ones(d), jnp.zeros(d)))


def minimal_loss(params, batch) -> jax.Array:
  """Next-token cross-entropy of a pre-LN RoPE decoder written out in jax.numpy, as one would by hand."""
  def norm(x, scale_bias):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-6) * scale_bias[0] + scale_bias[1]

  tokens = batch["inputs"]  # [batch, length]
  length = tokens.shape[1]
  positions = jnp.broadcast_to(jnp.arange(length), tokens.shape)
  causal = jnp.tril(jnp.ones((length, length), bool))
  x = params["embed"][tokens] * params["embed"].shape[1] ** 0.5  # [batch, length, d]
  for p in params["layers"]:
    y = norm(x, p["ln1"])
    q, k, v = (jnp.einsum("bld,dhk->blhk", y, p[w]) for w in ("wq", "wk", "wv"))  # [batch, length, heads, hd]
    q, k = apply_rope(q, positions), apply_rope(k, positions)
    logits = jnp.einsum("bqhk,bshk->bhqs", q, k) / q.shape[-1] ** 0.5
    probs = jax.nn.softmax(jnp.where(causal, logits, -1e30), axis=-1)
    attended = jnp.einsum("bhqs,bshk->bqhk", probs, v).reshape(x.shape)
    x = x + attended @ p["wo"]
    x = x + jax.nn.gelu(norm(x, p["ln2"]) @ p["wi"], approximate=False) @ p["wout"]
  logits = norm(x, params["ln_f"]) @ params["embed"].T  # [batch, length, vocab]
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()


def minimal_step():
  """(run, compiled) of the hand-written decoder's loss + gradient + AdamW update."""
  tx = optax.adamw(LEARNING_RATE)
  params = minimal_params(jax.random.key(0))
  state = [(params, tx.init(params))]
  batch = batch_of()

  def step(state, batch):
    params, opt_state = state
    loss, grads = jax.value_and_grad(minimal_loss)(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  compiled = jax.jit(step, donate_argnums=0).lower(state[0], batch).compile()

  def run():
    state[0], loss = compiled(state[0], batch)
    loss.block_until_ready()

  return run, compiled


def x_transformers_step():
  """run() of the same decoder in x-transformers (PyTorch eager, AdamW), or None when it is not installed."""
  if importlib.util.find_spec("torch") is None or importlib.util.find_spec("x_transformers") is None:
    return None
  import torch  # noqa: PLC0415
  from x_transformers import Decoder, TransformerWrapper  # noqa: PLC0415

  model = TransformerWrapper(num_tokens=VOCAB, max_seq_len=_LENGTH.value, use_abs_pos_emb=False, tie_embedding=True,
                             attn_layers=Decoder(dim=_D_MODEL.value, depth=_NUM_LAYERS.value, heads=_NUM_HEADS.value,
                                                 rotary_pos_emb=True))
  optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
  tokens = torch.randint(0, VOCAB, (_BATCH_SIZE.value, _LENGTH.value + 1))

  def run():
    logits = model(tokens[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

  return run


def throughput(peak: float, emit: Callable[[dict], None]) -> None:
  """Interleaved repeats of every implementation's step; one row each."""
  zoo_run, zoo_compiled, _ = zoo_step(_NUM_LAYERS.value, _SCAN_LAYERS.value)
  minimal_run, minimal_compiled = minimal_step()
  runs = {"zoo": zoo_run, "minimal_jax": minimal_run}
  flops = {"zoo": flops_of(zoo_compiled), "minimal_jax": flops_of(minimal_compiled)}
  torch_run = x_transformers_step()
  if torch_run is None:
    emit(dict(row="step", impl="x_transformers", skipped="torch or x_transformers is not installed"))
  else:
    runs["x_transformers"] = torch_run
  for run in runs.values():
    run()  # warm-up
  times = timing.interleaved(runs, _REPEATS.value, rotate=True)  # no one always runs right after PyTorch
  tokens = _BATCH_SIZE.value * _LENGTH.value
  config = dict(layers=_NUM_LAYERS.value, d_model=_D_MODEL.value, heads=_NUM_HEADS.value, batch=_BATCH_SIZE.value,
                length=_LENGTH.value, dtype="float32", repeats=_REPEATS.value, malloc=glibc_malloc_settings())
  medians = {name: statistics.median(values) for name, values in times.items()}
  for name, values in times.items():
    row = dict(row="step", impl=name, **config, min_s=round(min(values), 4), median_s=round(medians[name], 4),
               tokens_per_s=round(tokens / medians[name], 1))
    if name == "zoo":
      row.update(scan_layers=_SCAN_LAYERS.value, remat=_REMAT.value)
    if name in flops:
      row.update(step_flops=flops[name], achieved_flops_per_s=round(flops[name] / medians[name]),
                 fraction_of_peak=round(flops[name] / medians[name] / peak, 3))
    emit(row)
  ratios = {f"zoo_speed_over_{name}": round(medians[name] / medians["zoo"], 3) for name in runs if name != "zoo"}
  emit(dict(row="summary", **ratios))


def compile_times(emit: Callable[[dict], None]) -> None:
  depths = _COMPILE_LAYERS.value
  seconds = {}
  for scan_layers in (True, False):
    for layers in depths:
      _, _, seconds[scan_layers, layers] = zoo_step(layers, scan_layers)
      emit(dict(row="compile", layers=layers, scan_layers=scan_layers, remat=_REMAT.value, d_model=_D_MODEL.value,
                compile_s=round(seconds[scan_layers, layers], 2)))
  deepest, shallowest = max(depths), min(depths)
  emit(dict(row="compile_summary", scanned_ratio=round(seconds[True, deepest] / seconds[True, shallowest], 2),
            unscanned_ratio=round(seconds[False, deepest] / seconds[False, shallowest], 2),
            layers=[shallowest, deepest]))


def main() -> None:
  with jsonl.writer(_OUT.value) as emit:
    if not _COMPILE_ONLY.value:
      peak = matmul_peak(_PEAK_SIZE.value, _REPEATS.value)
      emit(dict(row="peak", matmul=f"float32 {_PEAK_SIZE.value}x{_PEAK_SIZE.value}", flops_per_s=round(peak),
                device=jax.devices()[0].device_kind))
      throughput(peak, emit)
    if _COMPILE_LAYERS.value:
      compile_times(emit)


if __name__ == "__main__":
  run(main)
