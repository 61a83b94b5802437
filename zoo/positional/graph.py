"""Graphormer's encodings (Ying et al. 2021) and URPE on graphs (Luo et al. 2022): a graph is a sequence whose
relation between two tokens is their shortest-path distance (SPD) instead of their lag. The encodings are named by
that relation, as `rpe` / `urpe` are by the lag:

* `spd` — centrality (`embed`: learned in- and out-degree embeddings added to the node features) and the
  spatial encoding (`logit_bias`: a per-head table indexed by SPD bucket, with rows of its own for unreachable pairs
  and for pairs with the graph token). A `Graph` may also carry the model's edge-encoding bias, which is handed on as
  a second bias term.
* `spd_urpe` — the same plus URPE's C (`prob_scale`), a second per-head table indexed by the same SPD
  bucket, initialised to ones (so an untrained model equals Graphormer).

The model puts a `Graph` in the hooks' coordinates (`Coordinates.relation`); the attention module hands the
coordinates on without looking inside. Without a graph (the encodings used in a sequence model) the sequence is read
as a path graph: the SPD of tokens i and j is |k_pos - q_pos|, served as an ordinary per-lag `RelativeTable` (the
SPD table mirrored onto lags -D..D) that every attention implementation evaluates tile by tile, and every token has
a path's interior degree 2 (the ends are not known to a causal model).

GraphGPS's encodings (`rwse`, `lappe`, `rrwp`, one module each) read the same `Graph`: the helpers here give them
its adjacency (spd == 1 between real nodes) and random walk, and the infinite path's walk probabilities that are
their sequence reading.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct
from jax import lax

from zoo.attention.bias import DenseBias, RelationTable, RelativeTable
from zoo.config import check
from zoo.positional.base import Coordinates, ModelDims, PositionalEncoding
from zoo.positional.registry import register
from zoo.positional.relative_bias import LagIndex

UNREACHABLE = -1  # spd value of node pairs in different components (and of padding nodes)
GRAPH_TOKEN = -2  # spd value of every pair that involves the graph token (virtual node)
PATH_DEGREE = 2  # the degree every token gets when a sequence is read as a path graph


@struct.dataclass
class Graph:
  """What a graph adds to the token positions, with the graph token (if any) already in place."""

  spd: jax.Array  # [batch, n, n] int32: shortest-path distance, UNREACHABLE or GRAPH_TOKEN
  in_degree: jax.Array  # [batch, n] int32
  out_degree: jax.Array  # [batch, n] int32
  edge_bias: jax.Array | None = None  # [batch, heads, n, n] float: the model's edge encoding, if it has one


def edge_terms(graph: Graph | None) -> tuple[DenseBias, ...]:
  """The model's edge-encoding bias, handed on by every graph encoding (none on a sequence or without one)."""
  return () if graph is None or graph.edge_bias is None else (DenseBias(graph.edge_bias),)


def adjacency(spd: jax.Array) -> jax.Array:
  """spd [batch, n, n] -> A [batch, n, n] float32: 1 between nodes one edge apart. Padding nodes (UNREACHABLE) and
  the graph token (GRAPH_TOKEN) have no edges."""
  return (spd == 1).astype(jnp.float32)


def random_walk(spd: jax.Array) -> jax.Array:
  """spd [batch, n, n] -> M = D⁻¹A [batch, n, n], row i the distribution of one step from node i. A node without
  edges (isolated, padding, the graph token) gets a zero row, not 0/0."""
  a = adjacency(spd)
  return a / jnp.maximum(a.sum(-1, keepdims=True), 1.0)


def walk_powers(m: jax.Array, first: int, steps: int) -> jax.Array:
  """m [batch, n, n] -> [steps, batch, n, n]: M^first, ..., M^(first + steps − 1), in float32 at full precision."""
  matmul = lambda a, b: jnp.matmul(a, b, precision=lax.Precision.HIGHEST)
  start = jnp.broadcast_to(jnp.eye(m.shape[-1], dtype=m.dtype), m.shape)
  for _ in range(first):
    start = matmul(start, m)
  _, powers = lax.scan(lambda p, _: (matmul(p, m), p), start, None, length=steps)
  return powers


def path_walk(steps: int, max_lag: int) -> np.ndarray:
  """[steps, max_lag + 1]: the probability that a k-step walk on the infinite path ends |lag| nodes away, k = 0 ..
  steps − 1: C(k, (k + |lag|)/2) / 2^k when |lag| <= k and k + |lag| is even, else 0 — a sequence read as a path
  whose ends are unknown (as the degrees above), the sequence reading of the random-walk encodings."""
  return np.array([[math.comb(k, (k + lag) // 2) / 2 ** k if lag <= k and (k + lag) % 2 == 0 else 0.0
                    for lag in range(max_lag + 1)] for k in range(steps)], np.float32)


@dataclasses.dataclass(frozen=True)
class GraphormerOptions:
  max_distance: int = 20  # SPDs >= max_distance share the last distance row
  max_degree: int = 64  # degrees >= max_degree share the last degree embedding
  centrality: bool = True  # the degree embeddings (the `embed` hook)
  share_across_layers: bool = True  # one spatial table for every layer (URPE's habit); False: one per layer

  def __post_init__(self):
    check(self.max_distance >= 1, f"spd: max_distance must be >= 1, got {self.max_distance}")
    check(self.max_degree >= PATH_DEGREE, f"spd: max_degree must be >= {PATH_DEGREE}, got {self.max_degree}")


@register("spd")
class Graphormer(PositionalEncoding):
  Options = GraphormerOptions
  relative = True  # on sequences: |lag| and a constant degree
  reads_relation = True  # its hooks read a `Graph` from the coordinates (the graph model requires such an encoding)

  def __init__(self, options: GraphormerOptions, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    self.rows = options.max_distance + 3  # distances 0..D, unreachable, graph token
    init = nnx.with_partitioning(nnx.initializers.normal(0.02), ("heads", None))
    self.spatial = nnx.Param(init(rngs.params(), (dims.num_heads, self.rows)))  # [heads, rows]
    if options.centrality:
      degree_init = nnx.with_partitioning(nnx.initializers.normal(0.02), (None, "embed"))
      shape = (options.max_degree + 1, dims.d_model)
      self.in_degree = nnx.Param(degree_init(rngs.params(), shape))  # [max_degree + 1, d_model]
      self.out_degree = nnx.Param(degree_init(rngs.params(), shape))

  def relation(self, spd: jax.Array) -> jax.Array:
    """SPD values [...] -> table rows [...]: min(spd, D), then D + 1 (unreachable), D + 2 (graph token)."""
    d = self.options.max_distance
    rows = jnp.minimum(spd, d)
    return jnp.where(spd == UNREACHABLE, d + 1, jnp.where(spd == GRAPH_TOKEN, d + 2, rows)).astype(jnp.int32)

  def table_term(self, table: jax.Array, graph: Graph | None) -> RelativeTable | RelationTable:
    """`table` [heads, rows] read by SPD bucket: through the graph's relation, or by |lag| on a sequence."""
    if graph is not None:
      return RelationTable(table=table, relation=self.relation(graph.spd))
    d = self.options.max_distance
    per_lag = jnp.concatenate([table[:, d:0:-1], table[:, :d + 1]], axis=1)  # [heads, 2D + 1]: row D + l = |l|
    return RelativeTable(table=per_lag, index_fn=LagIndex("clip", d))

  def embed(self, x: jax.Array, coords: Coordinates) -> jax.Array:
    """x [batch, n, d_model] + in-degree and out-degree embeddings (no-op without centrality)."""
    if not self.options.centrality:
      return x
    graph = coords.relation
    if graph is None:
      in_degree = out_degree = jnp.full(coords.positions.shape, PATH_DEGREE, jnp.int32)
    else:
      in_degree, out_degree = graph.in_degree, graph.out_degree
    top = self.options.max_degree
    added = self.in_degree[...][jnp.minimum(in_degree, top)] + self.out_degree[...][jnp.minimum(out_degree, top)]
    return x + added.astype(x.dtype)

  def logit_bias(self, q: Coordinates, k: Coordinates):
    del k  # self-attention over the graph's nodes: the keys' graph is the queries'
    graph = q.relation
    spatial = self.table_term(self.spatial[...], graph)
    return (spatial, *edges) if (edges := edge_terms(graph)) else spatial


@register("spd_urpe")
class GraphormerUrpe(Graphormer):
  """Graphormer + URPE: `(softmax(QKᵀ/√d + B_spatial + B_edge) ⊙ C[spd]) · V`, C starting at ones."""

  def __init__(self, options: GraphormerOptions, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    init = nnx.with_partitioning(nnx.initializers.ones, ("heads", None))
    self.c = nnx.Param(init(rngs.params(), (dims.num_heads, self.rows)))  # [heads, rows]

  def prob_scale(self, q: Coordinates, k: Coordinates):
    del k  # as in logit_bias
    return self.table_term(self.c[...], q.relation)
