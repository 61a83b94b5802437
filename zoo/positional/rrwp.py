"""RRWP, relative random-walk probabilities (Ma et al. 2023, "Graph Inductive Biases in Transformers without Message
Passing", GRIT): the pair (i, j) is described by P_ij = [I, M, M², ..., M^(K−1)]_ij, M = D⁻¹A, and each head adds a
learned linear function of it to the logit, bias_h(i, j) = Σ_k W[h, k] · P_ij[k] (the `logit_bias` hook).

GRIT projects P_ij to edge features that its own attention updates layer by layer; zoo keeps the projection per
head, a bias the shared attention evaluates — the RRWP half of GRIT, not its attention. GRIT's linear map has a bias
too: a constant per head, which the softmax cancels, so it is left out. K = 21 is GRIT's ZINC setting (`ksteps`).
The graph token (which GRIT does not have) gets one more channel, 1 on its pairs: its own learned bias per head, as
Graphormer's virtual distance. On a graph the bias is dense per example ([batch, heads, n, n], a `DenseBias`, served
where the edge encoding is); padding nodes and the graph token have no edges, so they change no real pair's walks.

Without a graph the sequence is read as the infinite path (`graph.path_walk`): P depends on the lag alone and
vanishes beyond K − 1, so the bias is a per-lag table, W times the path's walk probabilities, that every core
evaluates tile by tile (a `RelativeTable`, lags clipped at ±K whose row is 0).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from zoo.attention.bias import DenseBias, RelativeTable
from zoo.config import check
from zoo.positional.base import Coordinates, ModelDims, PositionalEncoding
from zoo.positional.graph import GRAPH_TOKEN, edge_terms, path_walk, random_walk, walk_powers
from zoo.positional.registry import register
from zoo.positional.relative_bias import LagIndex

HIGHEST = lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class RrwpOptions:
  steps: int = 21  # K: I, M, ..., M^(K−1)
  share_across_layers: bool = True  # one projection for every layer; False: one per layer (GRIT's pair features
  # change from layer to layer)

  def __post_init__(self):
    check(self.steps >= 1, f"rrwp: steps must be >= 1, got {self.steps}")


def rrwp(spd: jax.Array, steps: int) -> jax.Array:
  """spd [batch, n, n] -> [batch, n, n, steps + 1]: (M^k)_ij for k = 0..steps − 1, then 1 where the pair involves
  the graph token."""
  powers = walk_powers(random_walk(spd), 0, steps)  # [steps, batch, n, n]
  token = (spd == GRAPH_TOKEN).astype(powers.dtype)[..., None]
  return jnp.concatenate([jnp.moveaxis(powers, 0, -1), token], axis=-1)


@register("rrwp")
class Rrwp(PositionalEncoding):
  Options = RrwpOptions
  relative = True  # on sequences: a function of the lag
  reads_relation = True

  def __init__(self, options: RrwpOptions, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    init = nnx.with_partitioning(nnx.initializers.normal(options.steps ** -0.5), ("heads", None))
    self.weights = nnx.Param(init(rngs.params(), (dims.num_heads, options.steps + 1)))  # [heads, K + 1]

  def logit_bias(self, q: Coordinates, k: Coordinates):
    del k  # self-attention over the graph's nodes: the keys' graph is the queries'
    steps, graph, weights = self.options.steps, q.relation, self.weights[...]
    if graph is None:
      walks = path_walk(steps, steps)  # [K, K + 1]: lags 0..K, the last column 0
      per_lag = jnp.asarray(np.concatenate([walks[:, :0:-1], walks], axis=1))  # [K, 2K + 1]: column K + l = |l|
      table = jnp.matmul(weights[:, :steps], per_lag, precision=HIGHEST)  # [heads, 2K + 1]
      return RelativeTable(table=table, index_fn=LagIndex("clip", steps))
    bias = jnp.einsum("bijk,hk->bhij", rrwp(graph.spd, steps), weights.astype(jnp.float32), precision=HIGHEST)
    return DenseBias(bias), *edge_terms(graph)
