"""Randomized positional encodings (Ruoss et al., ACL 2023): while training, each sequence's positions 0..L−1 are
replaced by a sorted random subset of 0..M−1 (M ≫ L), so an encoding that reads positions sees the whole range it
will be evaluated on — in the right order, with gaps — while the sequences stay short. Evaluation (`model.eval()`)
and cached decoding use the true positions.

It wraps any encoding (it only changes the positions handed to the hooks); packed documents keep their order
because position p of every document maps to the same p-th smallest draw of its row.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.attention.linear import NoiseKeys


def randomized_positions(key: jax.Array, positions: jax.Array, max_position: int) -> jax.Array:
  """positions [batch, length] in 0..length−1 -> for each row, the positions' ranks in a sorted draw of `length`
  distinct integers from 0..max_position−1: [batch, length] int32, strictly increasing along each document."""
  batch, length = positions.shape
  draw = lambda k: jnp.sort(jax.random.choice(k, max_position, (length,), replace=False))
  subsets = jax.vmap(draw)(jax.random.split(key, batch)).astype(jnp.int32)  # [batch, length]
  return jnp.take_along_axis(subsets, jnp.clip(positions, 0, length - 1).astype(jnp.int32), axis=1)


class RandomizedPositions(nnx.Module):
  """Draws new positions at every training call from the RNG stream "positions"; the identity in evaluation."""

  def __init__(self, max_position: int, *, rngs: nnx.Rngs):
    self.max_position = max_position
    self.keys = NoiseKeys("positions", rngs)
    self.deterministic = False  # flipped by `model.eval()` / `model.train()`

  def __call__(self, positions: jax.Array) -> jax.Array:
    return positions if self.deterministic else randomized_positions(self.keys(), positions, self.max_position)
