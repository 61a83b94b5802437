"""Ahead-of-time estimates of the train step at real sizes on TPU slices — compiler estimates, nothing run.

  python -m launch.estimate_tpu [--sizes=125m,350m,1.3b] [--lengths=2048,8192] [--encodings=rope,alibi,t5_bias,urpe]
                                [--impls=xla,pallas] [--topologies=v5e:4x4,v5p:2x2x2] [--out=rows.jsonl]
  python -m launch.estimate_tpu --table=rows.jsonl      # the markdown table of docs/benchmarks.md of saved rows

For every combination, zoo's own train step (the decoder with `scan_layers` and the `--remat` policy, bfloat16
compute over float32 parameters, AdamW, one sequence per chip, FSDP over every chip of the slice) is compiled for
the topology with the TPU compiler (libtpu, the `tpu` extra; `zoo.train.aot` describes the devices), and one JSON
line reports:

* per-device memory from `memory_analysis()` (arguments + outputs − aliased + temporaries) and whether it fits the
  chip's HBM; a compiler refusal ("RESOURCE_EXHAUSTED") is a row with `fits: false` and its message;
* `step_flops`, `bytes_accessed`: the compiled per-device program's from `cost_analysis()` (the Pallas kernels
  declare theirs with `pl.CostEstimate`, so they count; the scanned layers' share is scaled from an unscanned
  two-layer compile, as the analysis counts a loop body once), and `model_flops`: 6 · parameters + 12 · layers ·
  d_model · length per token (PaLM's count, causal attention not halved), per device;
* `estimated_step_s`: a roofline from those FLOPs and bytes against the chip's peak bf16 FLOP/s and HBM bandwidth
  (`compute_s`, `memory_s`; the larger); `estimated_mfu` = model FLOPs / (estimated step time × peak FLOP/s) and
  `compute_only_mfu` the same with `compute_s`. XLA's "bytes accessed" sums every operation's operands and results,
  fused or not, so `memory_s` is pessimistic where fusion keeps intermediates on chip: the two MFUs bracket the
  estimate. Where libtpu reports its own step-time estimate ("optimal_seconds"), it is scaled like the FLOPs and
  given as `compiler_optimal_s` with its `compiler_mfu`, for reference only: it is not consistent between programs
  (0.97 s for a 1.3B step of 177 TFLOPs per v5p chip, beside a 0.39 s compute floor; 13–100 s for a 125M step of
  4 TFLOPs per v5e chip).
* where the unscanned two-layer program that scales the cost is refused while the scanned step fits, the row keeps
  the memory and the fit and says so in `cost_error`, with no cost or MFU.

These are the compiler's estimates for a program no TPU has run: they bound, they do not measure.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # compiling needs no exclusive libtpu lock

import math  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from absl import flags  # noqa: E402

from launch import jsonl  # noqa: E402
from launch.cli import define_list, positive_int, run  # noqa: E402
from zoo import attention, positional  # noqa: E402
from zoo.train.aot import GIB, HBM_PER_CHIP, mosaic_kernels, topology_devices  # noqa: E402
from zoo.train.mesh import batch_sharding, make_mesh  # noqa: E402
from zoo.train.step import compile_steps, make_program  # noqa: E402

# GPT-3's sizes (Brown et al. 2020, table 2.1) with head_dim 128 (the MXU's width) at 1.3B.
SIZES = {"125m": dict(num_layers=12, d_model=768, attention=dict(num_heads=12)),
         "350m": dict(num_layers=24, d_model=1024, attention=dict(num_heads=16)),
         "1.3b": dict(num_layers=24, d_model=2048, attention=dict(num_heads=16))}
VOCAB = 32000
# Per chip, by JAX's device_kind: peak dense bfloat16 FLOP/s and HBM bytes/s (Google Cloud's published figures).
PEAK_FLOPS = {"TPU v5 lite": 197e12, "TPU v5": 459e12, "TPU v4": 275e12, "TPU v6 lite": 918e12}
HBM_BANDWIDTH = {"TPU v5 lite": 819e9, "TPU v5": 2765e9, "TPU v4": 1228e9, "TPU v6 lite": 1640e9}
RULES = (("batch", ("data", "fsdp")), ("embed", ("fsdp",)), ("vocab", ()), ("heads", ()), ("mlp", ()),
         ("kv", ()), ("layers", ()))

_SIZES = define_list("sizes", "125m,350m,1.3b", "model sizes", choices=SIZES)
_LENGTHS = define_list("lengths", "2048,8192", "sequence lengths", positive_int)
_ENCODINGS = define_list("encodings", "rope,alibi,t5_bias,urpe", "positional encodings (model.positional.name)",
                         choices=positional.available())
_IMPLS = define_list("impls", "xla,pallas", "attention implementations (model.attention.impl)",
                     choices=attention.available())
_TOPOLOGIES = define_list("topologies", "v5e:4x4,v5p:2x2x2", "TPU slices to compile for")
_REMAT = flags.DEFINE_string("remat", "full", "model.remat of every row")
_OUT = jsonl.define_out_flag()
_TABLE = jsonl.define_table_flag()


def cost_of(compiled) -> dict:
  analysis = compiled.cost_analysis()
  return dict(analysis[0] if isinstance(analysis, (list, tuple)) else analysis or {})


def compile_step(config: dict, topology: str):
  """(compiled train step or the compiler's refusal message, its devices, parameter count, compile seconds)."""
  devices = topology_devices(topology)
  chips = len(devices)
  mesh = make_mesh((1, chips, 1), devices)
  program, _ = make_program("decoder", config, seed=0, tx=optax.adamw(1e-4), schedule=optax.constant_schedule(1e-4),
                            objective="next_token", grad_accum_steps=1, mesh=mesh, rules=RULES)
  shardings = {name: batch_sharding(mesh, RULES, 2) for name in ("inputs", "targets")}
  batch = {name: jax.ShapeDtypeStruct((chips, config["max_length"]), jnp.int32, sharding=s)
           for name, s in shardings.items()}
  params = sum(math.prod(x.shape) for x in jax.tree.leaves(program.abstract_state.params))
  train, _ = compile_steps(program, shardings)
  start = time.perf_counter()
  try:
    compiled = train.lower(program.abstract_state, batch).compile()
  except Exception as e:  # noqa: BLE001 — the TPU compiler refusing the program (out of HBM) is a result
    compiled = str(e).splitlines()[0][:300]
  return compiled, devices, params, time.perf_counter() - start


def estimate(size: str, length: int, pe: str, impl: str, topology: str, remat: str) -> dict:
  size_options = SIZES[size]
  config = dict(size_options, vocab_size=VOCAB, max_length=length, attention=dict(size_options["attention"], impl=impl),
                positional=dict(name=pe), dtype="bfloat16", scan_layers=True, remat=remat)
  compiled, devices, params, compile_s = compile_step(config, topology)
  kind, chips, layers = devices[0].device_kind, len(devices), config["num_layers"]
  model_flops = (6 * params + 12 * layers * config["d_model"] * length) * length  # per device: one sequence each
  row = dict(size=size, params=params, length=length, pe=pe, impl=impl, topology=topology, chips=chips,
             device_kind=kind, remat=remat, scan_layers=True, dtype="bfloat16", batch_per_chip=1,
             model_flops=model_flops, hbm_gib=round(HBM_PER_CHIP[kind] / GIB, 1), compile_s=round(compile_s, 1))
  if isinstance(compiled, str):
    return dict(row, fits=False, error=compiled)
  memory = compiled.memory_analysis()
  peak = (memory.argument_size_in_bytes + memory.output_size_in_bytes - memory.alias_size_in_bytes
          + memory.temp_size_in_bytes)
  # XLA's cost analysis counts a while loop's body once: the scanned program holds everything outside the layers
  # plus one layer (forward and backward). An unscanned two-layer program holds the outside plus two layers, so
  # their difference is one layer's cost, and the step's is the scanned figure plus (layers - 1) of it.
  memory_row = dict(row, peak_gib=round(peak / GIB, 2), temp_gib=round(memory.temp_size_in_bytes / GIB, 2),
                    fits=peak <= HBM_PER_CHIP[kind], mosaic_kernels=mosaic_kernels(compiled))
  two_layers, _, _, _ = compile_step(dict(config, num_layers=2, scan_layers=False), topology)
  if isinstance(two_layers, str):  # memory and fit stand; the step's cost cannot be scaled without it
    return dict(memory_row, cost_error=f"the unscanned two-layer program that scales the cost was refused: "
                                       f"{two_layers}")
  scanned, unrolled = cost_of(compiled), cost_of(two_layers)
  per_step = {key: scanned.get(key, 0.0) + (layers - 1) * (unrolled.get(key, 0.0) - scanned.get(key, 0.0))
              for key in ("flops", "bytes accessed", "optimal_seconds")}
  flops, nbytes = per_step["flops"], per_step["bytes accessed"]
  compute_s, memory_s = flops / PEAK_FLOPS[kind], nbytes / HBM_BANDWIDTH[kind]
  seconds = max(compute_s, memory_s)
  # libtpu's own step-time estimate ("optimal_seconds", when reported), scaled like the FLOPs (unscaled it counts
  # the loop body once: 0.03 s for a v5p step whose 177 TFLOPs per chip take ≥ 0.39 s at peak). Reference only.
  compiler_s = per_step["optimal_seconds"] if per_step["optimal_seconds"] > 0 else None
  mfu = lambda s: round(model_flops / (s * PEAK_FLOPS[kind]), 3)
  return dict(memory_row, step_flops=flops, bytes_accessed=nbytes,
              compute_s=round(compute_s, 4), memory_s=round(memory_s, 4),
              estimated_step_s=round(seconds, 4), estimate="roofline of cost_analysis",
              estimated_mfu=mfu(seconds), compute_only_mfu=mfu(compute_s),
              compiler_optimal_s=None if compiler_s is None else round(compiler_s, 4),
              compiler_mfu=None if compiler_s is None else mfu(compiler_s))


SIZE_NAMES = {"125m": "125M", "350m": "350M", "1.3b": "1.3B"}


def markdown_table(rows: list[dict]) -> str:
  """docs/benchmarks.md's table of saved rows."""
  lines = ["| model | L | encoding | impl | slice | peak GiB / chip (HBM) | fits | step TFLOPs / chip | compute s | "
           "memory s | MFU: roofline / compute only |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    head = f"| {SIZE_NAMES[r['size']]} | {r['length'] // 1024}k | {r['pe']} | {r['impl']} | {r['topology']} |"
    if "error" in r:
      asked = r["error"].split("temporaries (")[1].split(")")[0] + "iB" if "temporaries (" in r["error"] else "?"
      lines.append(f"{head} — ({r['hbm_gib']:g}) | no: {asked} of temporaries asked | | | | |")
      continue
    memory = f"{head} {r['peak_gib']:.2f} ({r['hbm_gib']:g}) | {'yes' if r['fits'] else 'no'} |"
    if "cost_error" in r:
      lines.append(f"{memory} — | — | — | — (its two-layer cost program was refused) |")
      continue
    lines.append(f"{memory} {r['step_flops'] / 1e12:.1f} | {r['compute_s']:.3f} | {r['memory_s']:.3f} | "
                 f"{r['estimated_mfu']:.2f} / {r['compute_only_mfu']:.2f} |")
  return "\n".join(lines)


def main() -> None:
  if _TABLE.value:
    print(markdown_table(jsonl.read(_TABLE.value)))
    return
  with jsonl.writer(_OUT.value) as emit:
    for topology in _TOPOLOGIES.value:
      for size in _SIZES.value:
        for length in _LENGTHS.value:
          for pe in _ENCODINGS.value:
            for impl in _IMPLS.value:
              emit(estimate(size, length, pe, impl, topology, _REMAT.value))


if __name__ == "__main__":
  run(main)
