"""Rotary position embedding (Su et al., RoFormer): rotates query/key feature pairs by position-dependent angles, so
q·k depends on positions only through their difference."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.config import check
from zoo.positional.base import ModelDims, PositionalEncoding
from zoo.positional.registry import register


def rotary_dim(head_dim: int, fraction: float) -> int:
  """How many leading features of a head rotate: int(head_dim · fraction), rounded down to even."""
  return int(head_dim * fraction) // 2 * 2


def apply_rope(
    x: jax.Array,  # [..., length, heads, head_dim]
    positions: jax.Array,  # [..., length]
    *,
    base: float = 10000.0,
    fraction: float = 1.0,
    interleaved: bool = False,
) -> jax.Array:  # [..., length, heads, head_dim], x.dtype
  """Rotates the first `rotary_dim(head_dim, fraction)` features of every head; the rest pass through.

  Pair i of the rotated features turns by angle `position · base^(-2i / rotary_dim)`. The pairs are
  `(i, i + rotary_dim/2)` — the rotate-half convention of GPT-NeoX / LLaMA — or, with `interleaved=True`,
  `(2i, 2i + 1)` — the GPT-J / RoFormer convention. Computed in float32.
  """
  rot = rotary_dim(x.shape[-1], fraction)
  if rot == 0:
    return x
  inv_freq = base ** (-jnp.arange(0, rot, 2, dtype=jnp.float32) / rot)  # [rot / 2]
  angles = jnp.asarray(positions, jnp.float32)[..., None, None] * inv_freq  # [..., length, 1, rot / 2]
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  x_rot, x_pass = x[..., :rot].astype(jnp.float32), x[..., rot:]
  if interleaved:
    first, second = x_rot[..., 0::2], x_rot[..., 1::2]
  else:
    first, second = x_rot[..., : rot // 2], x_rot[..., rot // 2:]
  new_first = first * cos - second * sin
  new_second = second * cos + first * sin
  if interleaved:
    rotated = jnp.stack([new_first, new_second], axis=-1).reshape(x_rot.shape)
  else:
    rotated = jnp.concatenate([new_first, new_second], axis=-1)
  return jnp.concatenate([rotated.astype(x.dtype), x_pass], axis=-1)


@dataclasses.dataclass(frozen=True)
class RopeOptions:
  base: float = 10000.0
  fraction: float = 1.0  # partial rotary (GPT-NeoX `rotary_pct`): the share of each head's features that rotate
  interleaved: bool = False  # False: rotate-half (NeoX / LLaMA); True: adjacent pairs (GPT-J)

  def __post_init__(self):
    check(self.base > 1.0, f"rope: base must be > 1, got {self.base}")
    check(0.0 < self.fraction <= 1.0, f"rope: fraction must be in (0, 1], got {self.fraction}")


@register("rope")
class Rope(PositionalEncoding):
  Options = RopeOptions
  relative = True

  def __init__(self, options: RopeOptions, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    if rotary_dim(dims.head_dim, options.fraction) == 0:
      raise ValueError(f"rope: fraction {options.fraction} of head_dim {dims.head_dim} rotates no feature pair")

  def transform_qk(self, q, k, q_pos, k_pos):
    o = self.options
    rotate = lambda x, pos: apply_rope(x, pos, base=o.base, fraction=o.fraction, interleaved=o.interleaved)
    return rotate(q, q_pos), rotate(k, k_pos)
