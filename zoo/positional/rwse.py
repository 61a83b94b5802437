"""RWSE, GraphGPS's random-walk structural encoding (Rampášek et al. 2022, after Dwivedi et al. 2022's RWPE): node
i's return probabilities (M^k)_ii, k = 1..K, of the random walk M = D⁻¹A, projected to d_model and added to its
features (the `embed` hook).

As GraphGPS's `KernelPENodeEncoder` with `model: Linear`, less its optional BatchNorm of the raw probabilities (zoo
keeps no batch statistics); GraphGPS concatenates the projection to a narrower node embedding, zoo adds it to the
full one (the same family of linear maps of the pair). K = 20 is GraphGPS's ZINC setting (`times_func: range(1,21)`).
The adjacency is the graph's spd == 1 between real nodes: padding nodes and the graph token have no edges, so they
change no real node's walk, and a node without edges (isolated, or the graph token) gets zeros, not 0/0.

Without a graph the sequence is read as the infinite path (`graph.path_walk`): every token gets the path's return
probabilities C(k, k/2)/2^k (k even; 0 for odd k), one constant vector — shift-invariant, and causal.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.config import check
from zoo.positional.base import Coordinates, ModelDims, PositionalEncoding
from zoo.positional.graph import edge_terms, path_walk, random_walk, walk_powers
from zoo.positional.registry import register


@dataclasses.dataclass(frozen=True)
class RwseOptions:
  steps: int = 20  # K: return probabilities after 1..K steps

  def __post_init__(self):
    check(self.steps >= 1, f"rwse: steps must be >= 1, got {self.steps}")


def return_probabilities(spd: jax.Array, steps: int) -> jax.Array:
  """spd [batch, n, n] -> [batch, n, steps]: (M^k)_ii for k = 1..steps, M = D⁻¹A."""
  powers = walk_powers(random_walk(spd), 1, steps)  # [steps, batch, n, n]
  return jnp.moveaxis(jnp.diagonal(powers, axis1=-2, axis2=-1), 0, -1)


@register("rwse")
class Rwse(PositionalEncoding):
  Options = RwseOptions
  relative = True  # on sequences: one constant vector
  reads_relation = True

  def __init__(self, options: RwseOptions, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    self.project = nnx.Linear(options.steps, dims.d_model, rngs=rngs,
                              kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "embed")),
                              bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("embed",)))

  def embed(self, x: jax.Array, coords: Coordinates) -> jax.Array:
    """x [batch, n, d_model] + the projected return probabilities [batch, n, K]."""
    steps, graph = self.options.steps, coords.relation
    if graph is None:
      walks = jnp.broadcast_to(jnp.asarray(path_walk(steps + 1, 0)[1:, 0]), (*x.shape[:2], steps))
    else:
      walks = return_probabilities(graph.spd, steps)
    return x + self.project(walks).astype(x.dtype)

  def logit_bias(self, q: Coordinates, k: Coordinates):
    del k  # the model's edge encoding, handed on (self-attention: the keys' graph is the queries')
    return edge_terms(q.relation)
