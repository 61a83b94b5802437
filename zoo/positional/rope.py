"""Rotary position embedding (Su et al., RoFormer): rotates query/key feature pairs by position-dependent angles, so
q·k depends on positions only through their difference; with `scaling`, the frequencies are adapted to contexts
`factor` times longer than the training length:

* `linear` — position interpolation (Chen et al. 2023): every frequency / factor (positions squeezed into the
  trained range).
* `ntk` — "NTK-aware" scaling (bloc97, 2023): base · factor^(rot / (rot − 2)): high frequencies almost unchanged,
  the lowest one interpolated by exactly `factor`.
* `yarn` — YaRN (Peng et al. 2023): per frequency pair d with r_d = original_length / wavelength_d, a ramp
  γ = clip((r_d − beta_slow) / (beta_fast − beta_slow), 0, 1) blends interpolation (γ = 0: θ_d / factor) and
  extrapolation (γ = 1: θ_d); and an attention temperature: q and k are both multiplied by 0.1 · ln(factor) + 1.
  `ramp="index"` is the ramp of YaRN's reference code and Hugging Face's `yarn`: linear in the pair index d between
  the (rounded) indices where r_d crosses beta_fast and beta_slow — what converted checkpoints were trained with.
* `llama3` — Llama 3.1's scaling (Meta's reference code, Hugging Face's `llama3`): pairs whose wavelength exceeds
  original_length / low_freq_factor interpolate (θ_d / factor), those shorter than original_length /
  high_freq_factor keep θ_d, and in between a blend with weight s = (original_length / wavelength − low_freq_factor)
  / (high_freq_factor − low_freq_factor) on θ_d.
* `dynamic` — dynamic NTK (emozilla, 2023; Hugging Face's `dynamic`): `ntk` with the factor recomputed from the
  length S the call reaches (the largest position + 1, at least original_length): base · (factor · S /
  original_length − factor + 1)^(rot / (rot − 2)). Up to original_length it is plain RoPE. Each call rotates with
  the base of its own length, so in cached decoding a key keeps the rotation of the step that wrote it — as
  Hugging Face's cached generation does (a full forward over the same tokens rotates every key with the final base).
* `longrope` — LongRoPE (Ding et al. 2024) as Phi-3 / Phi-3.5 / Phi-4-mini ship it (Hugging Face's `longrope`,
  `_compute_longrope_parameters` and `dynamic_rope_update` in transformers 5.25): pair d turns at
  θ_d / λ_d = 1 / (λ_d · base^(2d / rot)), with λ = `short_factor` while the call's length S (the largest position
  + 1, as for `dynamic`) is at most original_length, and λ = `long_factor` once S > original_length — Hugging Face
  switches on `max(position_ids) + 1 > original_max_position_embeddings`, per forward call, so in cached decoding
  S is the total length so far and a key keeps the factors of the step that wrote it. At every length the rotated
  features of q and k are multiplied by the attention factor, √(1 + ln(factor) / ln(original_length)) unless given
  (1 for factor 1; Hugging Face multiplies cos and sin, so features past the rotary fraction are not scaled).

`p` < 1 is p-RoPE (Barbero et al., ICLR 2025, "Round and round we go! What makes Rotary Positional Encodings
useful?"): only the highest-frequency fraction p of the pairs rotate — int(p · rot/2) pairs, at their usual
frequencies — and the lowest-frequency rest pass unrotated (frequency 0), the "semantic" channels no position
perturbs. p = 1 is RoPE, p = 0 is no positional encoding (the paper's 1-RoPE and 0-RoPE); it applies after any scaling.
"""

from __future__ import annotations

import dataclasses
import math

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
    inv_freq: jax.Array | None = None,  # [rot / 2]: the pairs' frequencies, default base^(-2i / rot)
    scale: float = 1.0,
) -> jax.Array:  # [..., length, heads, head_dim], x.dtype
  """Rotates the first `rotary_dim(head_dim, fraction)` features of every head; the rest pass through.

  Pair i of the rotated features turns by angle `position · base^(-2i / rotary_dim)`. The pairs are
  `(i, i + rotary_dim/2)` — the rotate-half convention of GPT-NeoX / LLaMA — or, with `interleaved=True`,
  `(2i, 2i + 1)` — the GPT-J / RoFormer convention. `scale` multiplies the rotated features only (longrope's
  attention factor, which Hugging Face folds into cos and sin). Computed in float32.
  """
  rot = rotary_dim(x.shape[-1], fraction)
  if rot == 0:
    return x
  if inv_freq is None:
    inv_freq = rope_frequencies(rot, base)  # [rot / 2]
  angles = jnp.asarray(positions, jnp.float32)[..., None, None] * inv_freq  # [..., length, 1, rot / 2]
  cos, sin = jnp.cos(angles) * scale, jnp.sin(angles) * scale
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


def rope_frequencies(rot: int, base: float, scaling: str = "none", factor: float = 1.0,
                     original_length: int = 2048, beta_fast: float = 32.0, beta_slow: float = 1.0,
                     ramp: str = "ratio", low_freq_factor: float = 1.0, high_freq_factor: float = 4.0,
                     length: jax.Array | None = None, short_factor: tuple[float, ...] = (),
                     long_factor: tuple[float, ...] = ()) -> jax.Array:
  """The rotation frequency of each of the rot/2 feature pairs, [rot / 2] float32 (see the module docstring).
  `length`: the length the call reaches (`dynamic`, `longrope`; a traced scalar)."""
  exponents = jnp.arange(0, rot, 2, dtype=jnp.float32) / rot
  if scaling == "longrope":  # 1 / (λ_d · base^(2d / rot)), as Hugging Face writes it
    factors = jnp.where(jnp.asarray(length) > original_length, jnp.asarray(long_factor, jnp.float32),
                        jnp.asarray(short_factor, jnp.float32))
    return 1.0 / (factors * base ** exponents)
  if scaling == "ntk":
    base = base * factor ** (rot / (rot - 2))
  if scaling == "dynamic":
    length = jnp.maximum(jnp.asarray(length, jnp.float32), original_length)
    base = base * (factor * length / original_length - (factor - 1)) ** (rot / (rot - 2))
  inv_freq = base ** -exponents
  if scaling == "linear":
    return inv_freq / factor
  if scaling == "llama3":
    wavelength = 2 * jnp.pi / inv_freq
    interpolated = jnp.where(wavelength > original_length / low_freq_factor, inv_freq / factor, inv_freq)
    weight = (original_length / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
    medium = (wavelength >= original_length / high_freq_factor) & (wavelength <= original_length / low_freq_factor)
    return jnp.where(medium, (1 - weight) * interpolated / factor + weight * interpolated, interpolated)
  if scaling == "yarn":
    if ramp == "index":
      # The pair index (real-valued) at which r_d = rotations, inverted from r_d = L · base^(−2d/rot) / 2π.
      index_of = lambda rotations: rot * math.log(original_length / (rotations * 2 * math.pi)) / (2 * math.log(base))
      low, high = max(math.floor(index_of(beta_fast)), 0), min(math.ceil(index_of(beta_slow)), rot - 1)
      high = high + 0.001 if high == low else high
      gamma = 1 - jnp.clip((jnp.arange(rot // 2, dtype=jnp.float32) - low) / (high - low), 0.0, 1.0)
    else:
      ratio = original_length * inv_freq / (2 * jnp.pi)  # r_d: wavelengths that fit in the original context
      gamma = jnp.clip((ratio - beta_slow) / (beta_fast - beta_slow), 0.0, 1.0)
    return (1 - gamma) * inv_freq / factor + gamma * inv_freq
  return inv_freq


SCALINGS = ("none", "linear", "ntk", "yarn", "llama3", "dynamic", "longrope")
RAMPS = ("ratio", "index")  # yarn: the paper's ramp over r_d, or the reference code's over the pair index


@dataclasses.dataclass(frozen=True)
class RopeOptions:
  base: float = 10000.0
  fraction: float = 1.0  # partial rotary (GPT-NeoX `rotary_pct`): the share of each head's features that rotate
  interleaved: bool = False  # False: rotate-half (NeoX / LLaMA); True: adjacent pairs (GPT-J)
  scaling: str = "none"  # one of SCALINGS: how to serve contexts `factor` times the original length
  factor: float = 1.0
  original_length: int = 2048  # yarn, llama3, dynamic, longrope: the context the model was trained on
  beta_fast: float = 32.0  # yarn: pairs with more than beta_fast wavelengths in the original context extrapolate
  beta_slow: float = 1.0  # yarn: pairs with fewer than beta_slow wavelengths interpolate
  ramp: str = "ratio"  # yarn: one of RAMPS
  low_freq_factor: float = 1.0  # llama3: wavelengths above original_length / low_freq_factor interpolate
  high_freq_factor: float = 4.0  # llama3: wavelengths below original_length / high_freq_factor are kept
  short_factor: tuple[float, ...] = ()  # longrope: λ_d per pair (rot/2 of them) up to original_length
  long_factor: tuple[float, ...] = ()  # longrope: λ_d per pair past original_length
  attention_factor: float | None = None  # longrope: rotated q, k features × this; None: from factor (see above)
  p: float = 1.0  # p-RoPE: the fraction of pairs (the highest frequencies) that rotate; the rest stay unrotated

  def __post_init__(self):
    check(self.base > 1.0, f"rope: base must be > 1, got {self.base}")
    check(0.0 < self.fraction <= 1.0, f"rope: fraction must be in (0, 1], got {self.fraction}")
    check(self.scaling in SCALINGS, f"rope: scaling must be one of {', '.join(SCALINGS)}, got {self.scaling!r}")
    check(self.factor >= 1.0, f"rope: factor must be >= 1, got {self.factor}")
    check(self.original_length >= 1, f"rope: original_length must be >= 1, got {self.original_length}")
    check(self.ramp in RAMPS, f"rope: ramp must be one of {', '.join(RAMPS)}, got {self.ramp!r}")
    check(0.0 <= self.p <= 1.0, f"rope: p must be in [0, 1], got {self.p}")
    check(self.high_freq_factor > self.low_freq_factor > 0, f"rope: need high_freq_factor > low_freq_factor > 0, "
                                                            f"got {self.high_freq_factor}, {self.low_freq_factor}")
    check(self.beta_fast > self.beta_slow > 0, f"rope: need beta_fast > beta_slow > 0, got {self.beta_fast}, "
                                               f"{self.beta_slow}")
    longrope = self.scaling == "longrope"
    check(longrope == bool(self.short_factor) == bool(self.long_factor),
          "rope: short_factor and long_factor go together, with scaling 'longrope' and only with it")
    check(len(self.short_factor) == len(self.long_factor) and all(
        isinstance(f, (int, float)) and f > 0 for f in self.short_factor + self.long_factor),
          "rope: short_factor and long_factor must be lists of positive numbers of the same length (one per pair)")
    check(self.attention_factor is None or (longrope and self.attention_factor > 0),
          f"rope: attention_factor must be > 0, with scaling 'longrope' only, got {self.attention_factor}")
    check(not longrope or self.original_length > 1, "rope: longrope's attention factor needs original_length > 1")

  @property
  def temperature(self) -> float:
    """The factor q and k are multiplied by (YaRN's attention temperature; 1 otherwise)."""
    return 0.1 * math.log(self.factor) + 1.0 if self.scaling == "yarn" else 1.0

  @property
  def rotated_scale(self) -> float:
    """The factor the rotated features of q and k are multiplied by (longrope's attention factor; 1 otherwise)."""
    if self.scaling != "longrope":
      return 1.0
    if self.attention_factor is not None:
      return self.attention_factor
    return math.sqrt(1 + math.log(self.factor) / math.log(self.original_length)) if self.factor > 1 else 1.0


@register("rope")
class Rope(PositionalEncoding):
  Options = RopeOptions
  relative = True

  def __init__(self, options: RopeOptions, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    rot = rotary_dim(dims.head_dim, options.fraction)
    if rot == 0:
      raise ValueError(f"rope: fraction {options.fraction} of head_dim {dims.head_dim} rotates no feature pair")
    if options.scaling in ("ntk", "dynamic") and rot < 4:
      raise ValueError(f"rope: scaling {options.scaling!r} needs at least 2 rotating feature pairs, got {rot // 2}")

  def transform_qk(self, q, k, q_coords, k_coords):
    o = self.options
    rot = rotary_dim(q.shape[-1], o.fraction)
    if o.scaling == "longrope" and len(o.short_factor) != rot // 2:  # (checked here: hooks are probed at other sizes)
      raise ValueError(f"rope: longrope needs one short / long factor per rotating feature pair ({rot // 2}), got "
                       f"{len(o.short_factor)}")
    length = (jnp.maximum(jnp.max(q_coords.positions), jnp.max(k_coords.positions)) + 1  # dynamic's, longrope's S
              if o.scaling in ("dynamic", "longrope") else None)
    inv_freq = rope_frequencies(rot, o.base, o.scaling, o.factor, o.original_length, o.beta_fast, o.beta_slow,
                                o.ramp, o.low_freq_factor, o.high_freq_factor, length, o.short_factor, o.long_factor)
    if o.p < 1.0:  # p-RoPE: the lowest frequencies (the last pairs) do not turn
      inv_freq = jnp.where(jnp.arange(rot // 2) < int(o.p * rot / 2), inv_freq, 0.0)

    def rotate(x, pos):
      out = apply_rope(x, pos, fraction=o.fraction, interleaved=o.interleaved, inv_freq=inv_freq,
                       scale=o.rotated_scale)
      return out if o.temperature == 1.0 else (out * o.temperature).astype(x.dtype)

    return rotate(q, q_coords.positions), rotate(k, k_coords.positions)
