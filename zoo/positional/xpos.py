"""xPos (Sun et al., ACL 2023, "A Length-Extrapolatable Transformer"): RoPE with an exponential decay per frequency
pair, so attention to distant keys fades smoothly instead of oscillating:

    q̃_m = R(m) q_m · ζ^(m/γ),   k̃_n = R(n) k_n · ζ^(−n/γ)   ⇒   q̃_m · k̃_n  depends on (n − m) only, × ζ^((m−n)/γ),

ζ_i = (2i/rot + 0.4) / 1.4 for pair i (< 1, faster decay for the high frequencies), γ = `scale_base` (512). Pairs
follow the rotate-half convention of `apply_rope`. Meant for causal models (keys at n ≤ m decay; a key after the
query would be amplified). Positions enter as exponents: ζ^(±m/γ) stays within float32 up to m ≈ 30 · γ.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from zoo.config import check
from zoo.positional.base import PositionalEncoding
from zoo.positional.registry import register
from zoo.positional.rope import apply_rope


@dataclasses.dataclass(frozen=True)
class XposOptions:
  base: float = 10000.0
  scale_base: float = 512.0  # γ

  def __post_init__(self):
    check(self.base > 1.0, f"xpos: base must be > 1, got {self.base}")
    check(self.scale_base > 0.0, f"xpos: scale_base must be > 0, got {self.scale_base}")


def xpos_decay(head_dim: int) -> jnp.ndarray:
  """ζ per feature [head_dim]: (2i/head_dim + 0.4)/1.4 for pair i, on both features of the pair (rotate-half)."""
  zeta = (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim + 0.4) / 1.4
  return jnp.concatenate([zeta, zeta])


@register("xpos")
class Xpos(PositionalEncoding):
  Options = XposOptions
  relative = True

  def transform_qk(self, q, k, q_coords, k_coords):
    zeta = xpos_decay(q.shape[-1])  # [head_dim]

    def rotate(x, positions, sign):
      power = sign * positions.astype(jnp.float32)[..., None, None] / self.options.scale_base  # [b, l, 1, 1]
      return (apply_rope(x, positions, base=self.options.base) * zeta ** power).astype(x.dtype)

    return rotate(q, q_coords.positions, 1.0), rotate(k, k_coords.positions, -1.0)
