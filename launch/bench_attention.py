r"""Attention implementations × encodings × lengths: compiled peak temporary memory and run time, as JSON lines.

    python -m launch.bench_attention                           # full sweep, L = 1k … 16k (≈ 15 min on 2 CPU cores)
    python -m launch.bench_attention --lengths=1024 --encodings=rpe,urpe --repeats=5
    python -m launch.bench_attention --aot_topology=v5e:1x1    # also compile xla / pallas for a TPU chip (libtpu)
    python -m launch.bench_attention --table=rows.jsonl        # the markdown table of docs/benchmarks.md from saved rows

One row per (encoding, impl, length): batch 1, 8 heads, head_dim 64, float32, bidirectional, forward pass (with
`--backward`: value and gradient wrt q, k, v and the tables). `temp_bytes` is `memory_analysis().temp_size_in_bytes`
of the compiled program. On CPU the YNNPACK fusion hides its internal buffers from that figure, so this script
turns it off (`--xla_cpu_experimental_ynn_fusion_type=`, set before JAX loads) and the dense reference then reports
its [heads, L, L] arrays. A program runs only if its temporaries fit under `--max_run_gib`; otherwise it is compiled
for the memory figure alone (`ran: false`). Times are wall clock over `--repeats` runs after one warm-up; the machine
may be shared, so the min and the median are both reported. Pallas runs on CPU only in the interpreter, whose speed
means nothing: there it is compiled (memory of the interpreted program) but not timed; `--aot_topology=TOPOLOGY`
adds rows compiled for a TPU chip (`platform: "tpu:<topology>"`, Mosaic kernels, no run). After the rows come
`{"summary": "urpe_over_rpe", ...}` lines: URPE's time and memory relative to RPE's for each impl and length.
"""

from __future__ import annotations

import os
import re
import time

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_experimental_ynn_fusion_type="
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # compiling for TPU needs no exclusive libtpu lock

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402
from flax import nnx  # noqa: E402

from launch import jsonl, timing  # noqa: E402
from launch.cli import define_list, positive_int, run  # noqa: E402
from zoo import attention, positional  # noqa: E402
from zoo.attention import AttentionMask  # noqa: E402
from zoo.positional import ModelDims  # noqa: E402

BATCH, HEADS, HEAD_DIM = 1, 8, 64
IMPLS = ("xla", "chunked", "pallas")

_LENGTHS = define_list("lengths", "1024,2048,4096,8192,16384", "sequence lengths", positive_int)
_ENCODINGS = define_list("encodings", "", "encodings (default: every structured encoding + none)",
                         choices=positional.available())
_IMPLS = define_list("impls", ",".join(IMPLS), "attention implementations", choices=IMPLS)
_REPEATS = timing.define_repeats_flag(3)
_MAX_RUN_GIB = flags.DEFINE_float("max_run_gib", 4.0, "compile only above this much temporary memory")
_BACKWARD = flags.DEFINE_bool("backward", False, "value and gradients instead of the forward pass")
_AOT_TOPOLOGY = flags.DEFINE_string("aot_topology", None, "also compile xla / pallas for this TPU topology (e.g. "
                                    "v5e:1x1; needs libtpu)")
_OUT = jsonl.define_out_flag()
_TABLE = jsonl.define_table_flag()


def structured_encodings() -> list[str]:
  """Registered encodings that hand attention a bias or a scale, plus "none" as the baseline."""
  names = ["none"]
  for name in positional.available():
    encoding = build(name, 64)
    if positional.implements(encoding, "logit_bias") or positional.implements(encoding, "prob_scale"):
      names.append(name)
  return names


def build(name: str, length: int):
  with nnx.use_eager_sharding(False):
    return positional.build(name, None, ModelDims(HEADS, HEAD_DIM, HEADS * HEAD_DIM, length, False),
                            rngs=nnx.Rngs(0))


def program(encoding_name: str, impl: str, length: int, backward: bool, tpu: bool):
  """A jitted function of (q, k, v, positions, params) and abstract arguments for it."""
  graphdef, params = nnx.split(build(encoding_name, length))
  options = dict(interpret=False, backend="tpu") if (tpu and impl == "pallas") else {}

  def forward(q, k, v, positions, params):
    encoding = nnx.merge(graphdef, params)
    coords = positional.Coordinates(positions, features=q.reshape(*q.shape[:2], -1))  # q stands in for the input
    bias, scale = positional.attention_terms(encoding, coords, coords)
    out = attention.attend(q, k, v, impl=impl, mask=AttentionMask(positions, positions), bias=bias, scale=scale,
                           **options)
    return jnp.sum(out.astype(jnp.float32) ** 2)

  fn = jax.value_and_grad(forward, argnums=(0, 1, 2, 4)) if backward else forward
  qkv = jax.ShapeDtypeStruct((BATCH, length, HEADS, HEAD_DIM), jnp.float32)
  positions = jax.ShapeDtypeStruct((BATCH, length), jnp.int32)
  abstract_params = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
  return jax.jit(fn), (qkv, qkv, qkv, positions, abstract_params), params


def tpu_compile(fn, abstract_args, topology_name: str):
  from jax.experimental import topologies  # noqa: PLC0415  (needs libtpu)
  from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: PLC0415
  device = topologies.get_topology_desc(platform="tpu", topology_name=topology_name).devices[0]
  replicated = NamedSharding(Mesh(np.array([device]), ("x",)), PartitionSpec())
  args = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), abstract_args)
  return fn.lower(*args).compile()


def measure(encoding_name: str, impl: str, length: int) -> dict:
  fn, abstract_args, params = program(encoding_name, impl, length, _BACKWARD.value, tpu=False)
  start = time.perf_counter()
  compiled = fn.lower(*abstract_args).compile()
  row = dict(encoding=encoding_name, impl=impl, length=length, batch=BATCH, heads=HEADS, head_dim=HEAD_DIM,
             platform=jax.default_backend(), backward=_BACKWARD.value, compile_s=round(time.perf_counter() - start, 3),
             temp_bytes=compiled.memory_analysis().temp_size_in_bytes, ran=False)
  runnable = row["temp_bytes"] <= _MAX_RUN_GIB.value * 2 ** 30 and not (impl == "pallas" and row["platform"] == "cpu")
  if runnable:
    keys = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(key, abstract_args[0].shape, jnp.float32) for key in keys)
    positions = jnp.tile(jnp.arange(length, dtype=jnp.int32), (BATCH, 1))
    run = lambda: jax.block_until_ready(compiled(q, k, v, positions, params))
    run()  # warm-up
    time_min_s, time_median_s = timing.min_median([timing.seconds(run) for _ in range(_REPEATS.value)], 4)
    row.update(ran=True, repeats=_REPEATS.value, time_min_s=time_min_s, time_median_s=time_median_s)
  return row


def summaries(rows: list[dict]) -> list[dict]:
  """URPE / RPE time and memory ratios per (platform, impl, length)."""
  by_key = {(r["platform"], r["impl"], r["length"], r["encoding"]): r for r in rows}
  out = []
  for (platform, impl, length, name), urpe in sorted(by_key.items()):
    rpe = by_key.get((platform, impl, length, "rpe"))
    if name != "urpe" or rpe is None or None in (urpe["temp_bytes"], rpe["temp_bytes"]):
      continue
    summary = dict(summary="urpe_over_rpe", platform=platform, impl=impl, length=length,
                   temp_ratio=round(urpe["temp_bytes"] / max(rpe["temp_bytes"], 1), 3))
    if urpe.get("ran") and rpe.get("ran"):
      summary["time_ratio_min"] = round(urpe["time_min_s"] / rpe["time_min_s"], 3)
    out.append(summary)
  return out


def mib(row: dict | None) -> str:
  if row is None:
    return "–"
  if row["temp_bytes"] is None:  # the TPU compiler's refusal says how much it would have needed
    needed = re.search(r"temporaries \(([\d.]+G)\)", row.get("error", ""))
    return f"OOM ({needed.group(1)}iB)" if needed else "OOM"
  return f"{row['temp_bytes'] / 2 ** 20:,.1f}"


def seconds(row: dict | None) -> str:
  return "–" if row is None or not row.get("ran") else f"{row['time_min_s']:.3g} / {row['time_median_s']:.3g}"


def markdown_table(saved: list[dict]) -> str:
  """The tables of docs/benchmarks.md: temporaries (MiB) per impl and platform with CPU times (min / median s), then URPE / RPE."""
  rows = [r for r in saved if "summary" not in r]
  by_key = {(r["platform"], r["impl"], r["length"], r["encoding"]): r for r in rows}
  tpu = sorted({p for p, *_ in by_key if p and p.startswith("tpu")})
  columns = [("cpu", "xla"), ("cpu", "chunked"), ("cpu", "pallas")] + [(p, i) for p in tpu for i in ("xla", "pallas")]
  header = ["encoding", "L"] + [f"{impl} {'interp.' if (p, impl) == ('cpu', 'pallas') else p} MiB"
                                for p, impl in columns] + ["xla CPU s", "chunked CPU s"]
  out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name, length in sorted({(k[3], k[2]) for k in by_key}, key=lambda nl: (nl[0] != "none", nl)):
    cells = [name, f"{length // 1024}k"] + [mib(by_key.get((p, i, length, name))) for p, i in columns]
    cells += [seconds(by_key.get(("cpu", i, length, name))) for i in ("xla", "chunked")]
    out.append("| " + " | ".join(cells) + " |")
  out += ["", "| URPE / RPE | L | temporaries | time (min) |", "|---|---|---|---|"]
  for summary in summaries(rows):
    out.append(f"| {summary['impl']} {summary['platform']} | {summary['length'] // 1024}k | {summary['temp_ratio']} | "
               f"{summary.get('time_ratio_min', '–')} |")
  return "\n".join(out)


def main() -> None:
  if _TABLE.value:
    print(markdown_table(jsonl.read(_TABLE.value)))
    return
  rows = []
  names = _ENCODINGS.value or structured_encodings()
  topology = _AOT_TOPOLOGY.value
  with jsonl.writer(_OUT.value) as emit:
    # Encodings innermost: rows that are compared (URPE against RPE) are measured back to back on a shared machine.
    for length in _LENGTHS.value:
      for impl in _IMPLS.value:
        for name in names:
          rows.append(measure(name, impl, length))
          emit(rows[-1])
          if topology and impl in ("xla", "pallas"):
            fn, abstract_args, _ = program(name, impl, length, _BACKWARD.value, tpu=True)
            rows.append(dict(rows[-1], platform=f"tpu:{topology}", ran=False, compile_s=None))
            for key in ("repeats", "time_min_s", "time_median_s"):
              rows[-1].pop(key, None)
            try:
              rows[-1]["temp_bytes"] = tpu_compile(fn, abstract_args, topology).memory_analysis().temp_size_in_bytes
            except jax.errors.JaxRuntimeError as error:  # the TPU compiler refuses programs that exceed HBM
              if "RESOURCE_EXHAUSTED" not in str(error):
                raise
              rows[-1].update(temp_bytes=None, error=str(error).splitlines()[0])
            emit(rows[-1])
    for summary in summaries(rows):
      emit(summary)


if __name__ == "__main__":
  run(main)
