"""xPos (Sun et al., ACL 2023, "A Length-Extrapolatable Transformer"): RoPE with an exponential decay per frequency
pair, so attention to distant keys fades smoothly instead of oscillating:

    q̃_m = R(m) q_m · ζ^(m/γ),   k̃_n = R(n) k_n · ζ^(−n/γ)   ⇒   q̃_m · k̃_n  depends on (n − m) only, × ζ^((m−n)/γ),

ζ_i = (2i/rot + 0.4) / 1.4 for pair i (< 1, faster decay for the high frequencies), γ = `scale_base` (512). Pairs
follow the rotate-half convention of `apply_rope`. Meant for causal models (keys at n ≤ m decay; a key after the
query would be amplified).

Only m − n matters, so positions enter relative to a reference c of the call: q̃_m = R(m − c) q_m · ζ^((m−c)/γ),
k̃_n = R(n − c) k_n · ζ^(−(n−c)/γ), whose products are the paper's. Formed from absolute positions, ζ^(−n/γ)
overflows float32 at n ≈ 36k (ζ_0^(−1/γ) = e^(1.25/512)) and the float32 angles n·θ lose whole radians' worth of
digits by 10⁶; relative to c both stay as exact as at the start of a sequence. c is the midpoint of each row's query
positions (torchscale's `XPOS` centres its exponents the same way, on its offset range): in one call the exponents stay
within half its span (≈ 72k tokens before ζ^(·) leaves float32), and keys far before the queries underflow to 0, as
their true weight does. The transformed key depends on the call's queries, so the encoding declares
`transform_per_call`: a decoding cache keeps keys as projected and the core transforms the whole key set at every
call (torchscale's incremental decoding does the same).
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


def reference_position(positions):
  """c per row: the midpoint of the row's positions [batch, length] -> [batch, 1] int32 (integer: m − c is exact)."""
  positions = positions.astype(jnp.int32)
  low, high = jnp.min(positions, axis=1, keepdims=True), jnp.max(positions, axis=1, keepdims=True)
  return low + (high - low) // 2


@register("xpos")
class Xpos(PositionalEncoding):
  Options = XposOptions
  relative = True
  transform_per_call = True

  def transform_qk(self, q, k, q_coords, k_coords):
    zeta = xpos_decay(q.shape[-1])  # [head_dim]
    c = reference_position(q_coords.positions)  # [batch, 1]

    def rotate(x, positions, sign):
      relative = positions.astype(jnp.int32) - c  # [batch, length], exact
      power = sign * relative.astype(jnp.float32)[..., None, None] / self.options.scale_base  # [b, l, 1, 1]
      return (apply_rope(x, relative, base=self.options.base) * zeta ** power).astype(x.dtype)

    return rotate(q, q_coords.positions, 1.0), rotate(k, k_coords.positions, -1.0)
