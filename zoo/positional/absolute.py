"""Absolute encodings, added to the token features once, at the input: none, sinusoidal, learned."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.config import check
from zoo.positional.base import Coordinates, ModelDims, PositionalEncoding
from zoo.positional.registry import register


def sinusoidal(positions: jax.Array, dim: int, *, base: float = 10000.0) -> jax.Array:
  """Vaswani et al. (2017): PE[p, 2i] = sin(p / base^(2i/dim)), PE[p, 2i+1] = cos(p / base^(2i/dim)).

  positions: [..., length] (any real dtype) -> [..., length, dim] float32. `dim` must be even.
  """
  if dim % 2:
    raise ValueError(f"sinusoidal encoding needs an even dim, got {dim}")
  inv_freq = base ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)  # [dim / 2]
  angles = jnp.asarray(positions, jnp.float32)[..., None] * inv_freq  # [..., length, dim / 2]
  return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(*angles.shape[:-1], dim)


@register("none")
class NoPositionalEncoding(PositionalEncoding):
  """No position at all: attention is then permutation-equivariant (the papers' "noPE" baseline)."""

  relative = True


@dataclasses.dataclass(frozen=True)
class SinusoidalOptions:
  base: float = 10000.0

  def __post_init__(self):
    check(self.base > 1.0, f"sinusoidal: base must be > 1, got {self.base}")


@register("sinusoidal")
class Sinusoidal(PositionalEncoding):
  """Fixed sinusoidal absolute encoding added to the token embeddings."""

  Options = SinusoidalOptions

  def __init__(self, options: SinusoidalOptions, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    if dims.d_model % 2:
      raise ValueError(f"sinusoidal encoding needs an even d_model, got {dims.d_model}")

  def embed(self, x: jax.Array, coords: Coordinates) -> jax.Array:
    # x: [batch, length, d_model]; positions: [batch, length]
    return x + sinusoidal(coords.positions, x.shape[-1], base=self.options.base).astype(x.dtype)


def check_positions_below(positions: jax.Array, limit: int, what: str) -> None:
  """Raises a ValueError if concrete `positions` reach `limit`; traced positions are checked by shape only."""
  if positions.shape[-1] > limit:
    raise ValueError(f"{what}: sequence length {positions.shape[-1]} exceeds max_length {limit}")
  if not isinstance(positions, jax.core.Tracer):
    highest = int(np.max(np.asarray(positions), initial=0))
    if highest >= limit:
      raise ValueError(f"{what}: position {highest} is beyond the table (max_length {limit}, positions 0..{limit - 1})")


@register("learned")
class Learned(PositionalEncoding):
  """A learned absolute embedding per position 0..max_length-1 (BERT / GPT-2 style)."""

  def __init__(self, options, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    init = nnx.with_partitioning(nnx.initializers.normal(0.02), (None, "embed"))
    self.table = nnx.Param(init(rngs.params(), (dims.max_length, dims.d_model)))  # [max_length, d_model]

  @property
  def max_positions(self) -> int:
    return self.dims.max_length

  def embed(self, x: jax.Array, coords: Coordinates) -> jax.Array:
    check_positions_below(coords.positions, self.dims.max_length, "learned positional encoding")
    return x + jnp.take(self.table[...], coords.positions, axis=0).astype(x.dtype)
