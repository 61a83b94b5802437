r"""The Pallas kernels' in-kernel table lookup, one tile: the TPU kernels' lag window (read, then skewed into the tile
by one strided lane rotation) against the general lookup (one select over the whole tile per table row), as JSON lines.

    python -m launch.bench_lookup                  # per-lag (URPE's B and C, RPE) and T5 tables, tiles 128 and 256
    python -m launch.bench_lookup --repeats=50 --out=results/perf/bench_lookup.jsonl

No TPU here, so two proxies of the kernel's vector work, per tile on the diagonal (the most distinct lags):
* `vector_elements` (and `mxu_macs`): array elements the lookup's vector ops touch, counted from the loops' real
  trip counts (`work`) — general: per table row in the tile, ops over the [bq, bk] tile; window: per table row in
  the window, ops over its [1, W] lanes, plus the rotations over [bq, W] and the gradient's [bq, bq] × [bq, bk]
  exchange-matrix product on the MXU;
* `seconds`: wall time of values + gradient in the Pallas interpreter on CPU, which runs each in-kernel op as one
  XLA array op — interleaved repeats, min and median. Interpreter time is a proxy of work, not TPU time.
"""

from __future__ import annotations

import functools
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

from launch import jsonl, timing
from launch.cli import define_list, positive_int, run
from zoo.attention.bias import RelativeTable, window_width
from zoo.positional.relative_bias import LagIndex

TABLES = {"per-lag (max_distance 127)": LagIndex("clip", 127), "per-lag (max_distance 1023)": LagIndex("clip", 1023),
          "t5 (32 buckets)": LagIndex("t5", 128, 32, True)}

_BLOCKS = define_list("blocks", "128,256", "tile sizes (bq = bk)", positive_int)
_REPEATS = timing.define_repeats_flag(20)
_OUT = jsonl.define_out_flag()


@functools.partial(jax.jit, static_argnums=0)
def lookup(term: RelativeTable, table, q_pos, k_pos, g):
  """(kernel_values, kernel_grad) of `term` on one tile — table [1, width], q_pos [bq, 1], k_pos [1, bk], g [bq, bk]
  — inside a Pallas kernel, interpreted."""
  width = table.shape[1]

  def kernel(row_ref, q_ref, k_ref, g_ref, values_ref, grad_ref):
    values_ref[...] = term.kernel_values(row_ref, q_ref[...], k_ref[...])
    grad_ref[...] = term.kernel_grad(g_ref[...], row_ref, q_ref[...], k_ref[...], width)

  shapes = [jax.ShapeDtypeStruct(g.shape, jnp.float32), jax.ShapeDtypeStruct((1, width), jnp.float32)]
  return pl.pallas_call(kernel, out_shape=shapes, interpret=True)(table, q_pos, k_pos, g)


def work(index: LagIndex, block: int, width: int) -> dict[str, dict[str, int]]:
  """Vector elements each lookup's ops touch (values + gradient) on a diagonal tile, from the loops' trip counts
  (distinct table rows in the tile / the window; compare + select per row, + a masked sum for the gradient, + the
  gradient row's select and add), and the window's MXU multiply-adds (the exchange-matrix product)."""
  tile, window = block * block, window_width(block, block)
  lags = np.arange(block)[None] - np.arange(block)[:, None]
  tile_rows = int(np.ptp(np.asarray(index(lags)))) + 1
  window_rows = int(np.ptp(np.asarray(index(-(block - 1) + np.arange(window))))) + 1
  per_row = lambda n: 2 * n + 3 * n + 2 * width
  return {"select": {"vector_elements": tile_rows * per_row(tile), "mxu_macs": 0},
          "window": {"vector_elements": window_rows * per_row(window) + 2 * block * window + 3 * block * window,
                     "mxu_macs": block * block * block}}


def main() -> None:
  rng = np.random.default_rng(0)
  with jsonl.writer(_OUT.value) as emit:
    for name, index in TABLES.items():
      width = max(128, pl.next_power_of_2(index.rows))
      table = jnp.asarray(rng.normal(size=(1, width)), jnp.float32)
      for block in _BLOCKS.value:
        positions = jnp.arange(block, dtype=jnp.int32)
        q_pos, k_pos = positions[:, None], positions[None, :]
        g = jnp.asarray(rng.normal(size=(block, block)), jnp.float32)
        terms = {lookup_kind: RelativeTable(None, index, lookup_kind) for lookup_kind in ("select", "window")}
        results = {kind: jax.block_until_ready(lookup(term, table, q_pos, k_pos, g)) for kind, term in terms.items()}
        for got in zip(*results.values()):
          np.testing.assert_allclose(np.asarray(got[0]), np.asarray(got[1]), atol=1e-3)  # the same lookup
        runs = {kind: lambda term=term: jax.block_until_ready(lookup(term, table, q_pos, k_pos, g))
                for kind, term in terms.items()}
        times = timing.interleaved(runs, _REPEATS.value)
        counts = work(index, block, width)
        for kind in terms:
          emit({"bench": "lookup", "table": name, "block": block, "lookup": kind, **counts[kind],
                "seconds_min": min(times[kind]), "seconds_median": statistics.median(times[kind]),
                "repeats": _REPEATS.value})
        emit({"bench": "lookup", "table": name, "block": block, "summary": "select_over_window",
              "vector_elements": counts["select"]["vector_elements"] / counts["window"]["vector_elements"],
              "seconds_median": statistics.median(times["select"]) / statistics.median(times["window"])})


if __name__ == "__main__":
  run(main)
