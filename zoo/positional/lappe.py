"""LapPE, GraphGPS's Laplacian eigenvector encoding (Rampášek et al. 2022, after Dwivedi et al. 2020 and Kreuzer et
al. 2021's SAN): the first k eigenvectors of the graph Laplacian, each node's entries fed with their eigenvalues to
a small network whose output is added to the node's features (the `embed` hook).

Following GraphGPS (`LapPENodeEncoder` with `model: DeepSet`, `laplacian_norm: none`, `eigvec_norm: L2`):

* the **combinatorial** Laplacian L = D − A (GraphGPS's configs' `laplacian_norm: none`), unit eigenvectors of the k
  smallest eigenvalues (`max_freqs`, 8 by default);
* a DeepSet over the node's k pairs (v_i, λ): φ (a Linear 2 → hidden, ReLU, and `layers − 1` more Linear + ReLU of
  width hidden) on each pair, summed over the pairs present — a graph of fewer than k nodes has fewer pairs; GraphGPS
  fills them with NaN and zeroes them after φ, as here — and a Linear hidden → d_model added to the node's features
  (GraphGPS concatenates a dim_pe-wide output to a narrower node embedding: the same family of maps up to the first
  layer's linear map; its φ widens to 2·dim_pe first, zoo keeps one width);
* random **sign flips** of each eigenvector, per graph, in training (an eigenvector's sign is arbitrary: the network
  must not learn it). In evaluation each sign is fixed canonically — the entry of largest magnitude positive — so
  evaluation is deterministic and, for eigenvalues of multiplicity one, permutation-equivariant (GraphGPS takes
  whatever sign its eigensolver gives).

The adjacency is spd == 1 between real nodes (symmetrised: undirected). Padding nodes and the graph token (real
node ⇔ spd_ii = 0) are parked: their Laplacian rows get 2n on the diagonal instead, above every real eigenvalue
(≤ 2·max degree), so their eigenvectors (zero on real nodes) come last and the real graph's come first whatever the
padding — marked absent, and their own encodings are zero. Repeated eigenvalues (a disconnected graph, symmetries)
make any basis of their eigenspace valid; that ambiguity is LapPE's own.

Without a graph the sequence is read as the path graph of max_length nodes, whose Laplacian's eigenpairs are known
in closed form (the DCT-II basis): λ_j = 2 − 2cos(πj/N), v_j(p) ∝ cos(πj(p + ½)/N), j = 0..k − 1 — an absolute
encoding of positions below max_length, with the formula's signs (nothing arbitrary to flip).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.attention.linear import NoiseKeys
from zoo.config import check
from zoo.positional.absolute import check_positions_below
from zoo.positional.base import Coordinates, ModelDims, PositionalEncoding
from zoo.positional.graph import adjacency, edge_terms
from zoo.positional.registry import register


@dataclasses.dataclass(frozen=True)
class LapPeOptions:
  eigenvectors: int = 8  # k: GraphGPS's max_freqs
  hidden: int = 16  # φ's width (GraphGPS's dim_pe)
  layers: int = 2  # φ's Linear + ReLU layers

  def __post_init__(self):
    for name in ("eigenvectors", "hidden", "layers"):
      check(getattr(self, name) >= 1, f"lappe: {name} must be >= 1, got {getattr(self, name)}")


def laplacian_eigenpairs(spd: jax.Array, count: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """spd [batch, n, n] -> the `count` smallest eigenvalues [batch, count] of the real nodes' combinatorial Laplacian,
  their unit eigenvectors [batch, n, count] (signs canonical: largest-magnitude entry positive) and which are
  present [batch, count]."""
  a = adjacency(spd)
  a = jnp.maximum(a, jnp.swapaxes(a, 1, 2))
  n = spd.shape[-1]
  parked = 2.0 * n  # above every real eigenvalue
  real = jnp.diagonal(spd, axis1=1, axis2=2) == 0  # [batch, n]
  diagonal = a.sum(-1) + jnp.where(real, 0.0, parked)  # [batch, n]
  values, vectors = jnp.linalg.eigh(jnp.eye(n, dtype=a.dtype) * diagonal[:, None, :] - a)  # ascending
  if n < count:  # fewer nodes than eigenvectors asked for: the rest are absent
    values = jnp.pad(values, ((0, 0), (0, count - n)), constant_values=parked)
    vectors = jnp.pad(vectors, ((0, 0), (0, 0), (0, count - n)))
  values, vectors = values[:, :count], vectors[:, :, :count]
  peak = jnp.take_along_axis(vectors, jnp.argmax(jnp.abs(vectors), axis=1, keepdims=True), axis=1)  # [batch, 1, k]
  return values, vectors * jnp.where(peak < 0, -1.0, 1.0), values < parked - 1.0


def path_eigenpairs(positions: jax.Array, count: int, length: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The combinatorial Laplacian's eigenpairs of the path of `length` nodes at `positions` [batch, L]: eigenvalues
  [1, count], unit eigenvectors [batch, L, count], present [1, count] (j < length)."""
  j = np.arange(count)
  values = 2.0 - 2.0 * np.cos(np.pi * j / length)
  scale = np.where(j == 0, np.sqrt(1.0 / length), np.sqrt(2.0 / length))
  vectors = scale * jnp.cos(np.pi * j * (positions[..., None].astype(jnp.float32) + 0.5) / length)
  return jnp.asarray(values[None], jnp.float32), vectors.astype(jnp.float32), jnp.asarray(j < length)[None]


@register("lappe")
class LapPe(PositionalEncoding):
  Options = LapPeOptions
  reads_relation = True

  def __init__(self, options: LapPeOptions, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    linear = lambda width_in, width_out, axes: nnx.Linear(
        width_in, width_out, rngs=rngs, kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), axes),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros, axes[1:]))
    self.phi = nnx.List([linear(2 if i == 0 else options.hidden, options.hidden, (None, None))
                         for i in range(options.layers)])
    self.rho = linear(options.hidden, dims.d_model, (None, "embed"))
    self.signs = NoiseKeys("lappe", rngs)  # sign flips: a fresh draw every training step; none in evaluation

  @property
  def max_positions(self) -> int:
    return self.dims.max_length  # on sequences: the path's nodes

  def embed(self, x: jax.Array, coords: Coordinates) -> jax.Array:
    """x [batch, n, d_model] + ρ(Σ over present pairs of φ(v_i, λ))."""
    count, graph = self.options.eigenvectors, coords.relation
    if graph is None:
      check_positions_below(coords.positions, self.dims.max_length, "lappe")
      values, vectors, present = path_eigenpairs(coords.positions, count, self.dims.max_length)
      mask = jnp.broadcast_to(present[:, None, :], vectors.shape)
    else:
      values, vectors, present = laplacian_eigenpairs(graph.spd, count)
      if not self.signs.deterministic:
        vectors = vectors * jax.random.rademacher(self.signs(), (vectors.shape[0], 1, count), jnp.float32)
      real = jnp.diagonal(graph.spd, axis1=1, axis2=2) == 0
      mask = present[:, None, :] & real[:, :, None]  # [batch, n, k]
    h = jnp.stack([vectors, jnp.broadcast_to(values[:, None, :], vectors.shape)], axis=-1)  # [batch, n, k, 2]
    for layer in self.phi:
      h = jax.nn.relu(layer(h))
    pooled = jnp.where(mask[..., None], h, 0.0).sum(-2)  # [batch, n, hidden]
    return x + self.rho(pooled).astype(x.dtype)

  def logit_bias(self, q: Coordinates, k: Coordinates):
    del k  # the model's edge encoding, handed on (self-attention: the keys' graph is the queries')
    return edge_terms(q.relation)
