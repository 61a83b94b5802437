"""The graph family (Graphormer, Ying et al. 2021): node features → [graph token] + nodes → N × Block → head.

The shared Backbone and Block run unchanged; what makes it a graph model is the relation handed to the positional
hooks (`zoo.positional.Graph`): shortest-path distances instead of lags, node degrees for the centrality encoding,
and the edge-encoding bias computed here. The spatial table (and URPE's C with `positional.name="spd_urpe"`)
belongs to the encoding; this module owns what depends on the graph's features:

* node feature embeddings: one table per feature column, summed;
* edge encoding: for nodes i, j, the mean over the first ≤ max_hops edges e_1..e_m of their shortest path of
  (edge embedding e_n · W_n), per head, where the edge embedding [heads] is the mean of its columns' embeddings and
  W_n a learned [heads, heads] matrix of hop n. The paths' edge indices come precomputed with the data (-1 padded);
* the graph token (virtual node): a learned vector at index 0 that sees every node and is seen by every node
  through its own spatial row (`GRAPH_TOKEN`) — Graphormer's learned virtual distance;
* heads: graph level (the graph token's features, or a mean over the nodes without one) or node level.

Padding nodes (mask False) are invalid keys: they change no real node's output.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from zoo import positional
from zoo.config import check
from zoo.models.backbone import Backbone
from zoo.models.config import PositionalConfig, TransformerConfig
from zoo.models.encoder import classifier
from zoo.models.registry import register
from zoo.nn.context import CallContext
from zoo.positional.graph import GRAPH_TOKEN, Graph


@dataclasses.dataclass(frozen=True)
class GraphConfig(TransformerConfig):
  vocab_size: int = 32  # values of each node feature column
  num_node_features: int = 1  # node feature columns
  edge_vocab_size: int = 8  # values of each edge feature column
  num_edge_features: int = 1  # edge feature columns
  max_hops: int = 5  # edge encoding: edges of each shortest path that count; 0 turns the edge encoding off
  graph_token: bool = True
  head: Literal["graph", "node"] = "graph"
  num_classes: int = 1  # outputs per graph (or node); 1 with a regression objective
  positional: PositionalConfig = dataclasses.field(default_factory=lambda: PositionalConfig("spd"))
  relation: ClassVar[bool] = True  # shortest-path distances and edges (`Graph`) reach the encoding's hooks

  def __post_init__(self):
    super().__post_init__()
    name = self.positional.name
    check(positional.get(name).reads_relation,
          f"model 'graph': positional.name must be a graph encoding ({', '.join(graph_encodings())}), got {name!r}")
    for name in ("num_node_features", "edge_vocab_size", "num_edge_features", "num_classes"):
      check(getattr(self, name) >= 1, f"model: {name} must be >= 1, got {getattr(self, name)}")
    check(self.max_hops >= 0, f"model: max_hops must be >= 0, got {self.max_hops}")


def graph_encodings() -> list[str]:
  return [n for n in positional.available() if positional.get(n).reads_relation]


class FeatureEmbedding(nnx.Module):
  """Integer features [..., columns] in [0, vocab) → the sum (or mean) over columns of per-column embeddings."""

  def __init__(self, vocab: int, columns: int, features: int, *, reduce: Literal["sum", "mean"], axes, init,
               rngs: nnx.Rngs):
    self.vocab, self.reduce = vocab, reduce
    self.table = nnx.Embed(vocab * columns, features, embedding_init=nnx.with_partitioning(init, axes), rngs=rngs)

  def __call__(self, ids: jax.Array) -> jax.Array:
    offsets = self.vocab * jnp.arange(ids.shape[-1])  # column c reads rows [c·vocab, (c+1)·vocab)
    embedded = self.table(jnp.clip(ids, 0, self.vocab - 1) + offsets)  # [..., columns, features]
    return embedded.sum(-2) if self.reduce == "sum" else embedded.mean(-2)


class EdgeEncoding(nnx.Module):
  """Graphormer's edge encoding: bias[b, h, i, j] = mean over the first ≤ max_hops edges of path(i, j) of
  (edge embedding · W_hop)[h]."""

  def __init__(self, config: GraphConfig, *, rngs: nnx.Rngs):
    heads = config.attention.num_heads
    self.embed = FeatureEmbedding(config.edge_vocab_size, config.num_edge_features, heads, reduce="mean",
                                  axes=(None, "heads"), init=nnx.initializers.normal(0.02), rngs=rngs)
    hop_init = nnx.with_partitioning(nnx.initializers.normal(heads ** -0.5), (None, None, "heads"))
    self.hops = nnx.Param(hop_init(rngs.params(), (config.max_hops, heads, heads)))  # [max_hops, heads, heads]

  def __call__(self, edge_features: jax.Array, edge_paths: jax.Array) -> jax.Array:
    """edge_features [batch, edges, columns], edge_paths [batch, n, n, hops ≥ max_hops] (-1 = no edge)
    -> [batch, heads, n, n]."""
    max_hops = self.hops.shape[0]
    paths = edge_paths[..., :max_hops]  # [batch, n, n, hops]
    edges = self.embed(edge_features)  # [batch, edges, heads]
    on_path = paths >= 0
    gathered = jax.vmap(lambda e, p: e[p])(edges, jnp.maximum(paths, 0))  # [batch, n, n, hops, heads]
    gathered = jnp.where(on_path[..., None], gathered, 0.0)
    summed = jnp.einsum("bijnh,nhg->bgij", gathered, self.hops[...][:paths.shape[-1]])
    return summed / jnp.maximum(on_path.sum(-1), 1)[:, None].astype(summed.dtype)


@register("graph")
class GraphTransformer(nnx.Module):
  """node features [batch, n, columns] (+ mask, spd, degrees, edges) -> [batch, classes] (graph head) or
  [batch, n, classes] (node head)."""

  Config = GraphConfig
  # Taken by keyword from a batch (`zoo.data` graph collation): the relation and the node mask.
  batch_fields: ClassVar[tuple[str, ...]] = ("mask", "spd", "in_degree", "out_degree", "edge_features", "edge_paths")

  def __init__(self, config: GraphConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.nodes = FeatureEmbedding(config.vocab_size, config.num_node_features, config.d_model, reduce="sum",
                                  axes=("vocab", "embed"), init=nnx.initializers.normal(config.d_model ** -0.5),
                                  rngs=rngs)
    if config.graph_token:
      token_init = nnx.with_partitioning(nnx.initializers.normal(0.02), ("embed",))
      self.token = nnx.Param(token_init(rngs.params(), (config.d_model,)))  # [d_model]
    self.edges = EdgeEncoding(config, rngs=rngs) if config.max_hops else None
    self.backbone = Backbone(config, causal=config.causal_attention, rngs=rngs)
    self.head = classifier(config.d_model, config.num_classes, rngs=rngs)

  def __call__(
      self,
      inputs: jax.Array,  # [batch, n, node_columns] int node features
      *,
      mask: jax.Array,  # [batch, n] bool: real nodes
      spd: jax.Array,  # [batch, n, n] int32 shortest-path distances (-1: unreachable or padding)
      in_degree: jax.Array,  # [batch, n] int32
      out_degree: jax.Array,  # [batch, n] int32
      edge_features: jax.Array | None = None,  # [batch, edges, edge_columns] int
      edge_paths: jax.Array | None = None,  # [batch, n, n, hops] int edge indices along each shortest path, -1 pad
  ) -> jax.Array:
    if inputs.ndim != 3:
      raise ValueError(f"graph model expects node features [batch, nodes, columns], got shape {inputs.shape}")
    x = self.nodes(inputs).astype(self.config.compute_dtype)  # [batch, n, d_model]
    mask = mask.astype(bool)
    edge_bias = None
    if self.edges is not None:
      if edge_features is None or edge_paths is None:
        raise ValueError("graph model with max_hops > 0 needs edge_features and edge_paths")
      edge_bias = self.edges(edge_features, edge_paths)  # [batch, heads, n, n]
    if self.config.graph_token:
      x, mask, spd, in_degree, out_degree, edge_bias = self.add_graph_token(
          x, mask, spd, in_degree, out_degree, edge_bias)
    graph = Graph(spd=spd, in_degree=in_degree, out_degree=out_degree, edge_bias=edge_bias)
    # Node indices serve only the mask; graph encodings read the relation `spd`, never these.
    positions = jnp.broadcast_to(jnp.arange(x.shape[1], dtype=jnp.int32), mask.shape)
    features, _ = self.backbone(x, CallContext(positions, relation=graph, valid=mask))  # [batch, (1 +) n, d_model]
    if self.config.head == "node":
      nodes = features[:, 1:] if self.config.graph_token else features
      return self.head(nodes).astype(jnp.float32)  # [batch, n, classes]
    if self.config.graph_token:
      pooled = features[:, 0]
    else:
      weights = mask.astype(jnp.float32)
      pooled = jnp.einsum("bnd,bn->bd", features.astype(jnp.float32), weights) / jnp.maximum(
          weights.sum(1, keepdims=True), 1.0)
    return self.head(pooled).astype(jnp.float32)  # [batch, classes]

  def add_graph_token(self, x, mask, spd, in_degree, out_degree, edge_bias):
    """Prepends the graph token: index 0, always valid, degree 0, GRAPH_TOKEN distance to every node, no edges."""
    batch = x.shape[0]
    token = jnp.broadcast_to(self.token[...].astype(x.dtype), (batch, 1, x.shape[-1]))
    x = jnp.concatenate([token, x], axis=1)
    mask = jnp.concatenate([jnp.ones((batch, 1), bool), mask], axis=1)
    spd = jnp.pad(spd, ((0, 0), (1, 0), (1, 0)), constant_values=GRAPH_TOKEN)
    in_degree, out_degree = (jnp.pad(d, ((0, 0), (1, 0))) for d in (in_degree, out_degree))
    if edge_bias is not None:
      edge_bias = jnp.pad(edge_bias, ((0, 0), (0, 0), (1, 0), (1, 0)))
    return x, mask, spd, in_degree, out_degree, edge_bias
