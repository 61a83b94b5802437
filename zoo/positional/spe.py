"""Stochastic positional encoding (Liutkus et al., ICML 2021): relative position for attention that never forms the
L × L matrix, so it works with linear attention (its purpose) as well as with softmax attention (as an
approximation).

SPE draws random positional codes q̄(m), k̄(n) `[heads, head_dim, R]` whose cross-covariance is a learned stationary
kernel, and replaces queries and keys by their code-weighted sums (`transform_qk`):

    q̂[b, m, h, r] = Σ_d q[b, m, h, d] · q̄[m, h, d, r],   k̂ likewise,   so   E[q̂(m)·k̂(n)] = √(R/D) Σ_d q_d k_d P_d(m − n)

— relative attention in expectation, with features of size R (`num_realizations`) instead of D. Codes are scaled by
(R·D)^(−1/4) and shared across the batch:

* `spe_sine` — q̄ = Ω_q z, k̄ = Ω_k z, with Ω the interleaved [cos, sin] of 2π f m + θ (queries) and 2π f n (keys),
  f = sigmoid(freqs)/2, z ~ N(0, 1)/√(2K) · softplus(gains) per sine:
  P(τ) = (1/2K) Σ_k softplus(gains_k)² cos(2π f_k τ + θ_k).
* `spe_conv` — q̄ and k̄ filter the *same* white noise along positions with two learned filters of `kernel_size`
  taps per (head, feature): q̄(m) = Σ_t w_q[t] z(m + t), so P(τ) = Σ_t w_q[t] w_k[t + τ], zero for |τ| ≥ kernel_size.
  The noise is a grid over positions 0..max_length − 1 (+ taps), so positions must stay below max_length.

Gate (default on): one parameter per (head, feature), σ = sigmoid(gate) is the weight of the *positional* part:
q̄' = √σ q̄ + √(1−σ) ε and k̄' = √σ k̄ + √(1−σ) ε with ε ~ N(0, 1)/(D·R)^(1/4) position-independent and shared by
queries and keys, so P' = σ P + (1 − σ): σ = 1 is pure SPE, σ = 0 position-agnostic. (The paper's PyTorch code
names the noise weight σ; this is the other convention, with its initialisation: σ ≈ 0.88.)

Noise comes from an RNG stream of its own, named "spe" (`NoiseKeys`): redrawn at every call while training,
fixed in evaluation, so evaluation, cached decoding and `generate` are deterministic given the key. Codes at a
position depend only on that position and the noise, which is why caching transformed keys is valid.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.attention.linear import NoiseKeys
from zoo.config import check
from zoo.positional.absolute import check_positions_below
from zoo.positional.base import ModelDims, PositionalEncoding
from zoo.positional.registry import register

Side = Literal["query", "key"]


@dataclasses.dataclass(frozen=True)
class SineSpeOptions:
  num_realizations: int = 64  # R: the feature size of q̂ and k̂ (LRA: 64, Image: 32)
  num_sines: int = 10  # K (LRA: 10, music: 5)
  gated: bool = True
  share_across_layers: bool = True  # one set of SPE parameters for every layer

  def __post_init__(self):
    check(self.num_realizations >= 1, f"spe_sine: num_realizations must be >= 1, got {self.num_realizations}")
    check(self.num_sines >= 1, f"spe_sine: num_sines must be >= 1, got {self.num_sines}")


@dataclasses.dataclass(frozen=True)
class ConvSpeOptions:
  num_realizations: int = 64  # R: the feature size of q̂ and k̂
  kernel_size: int = 128  # taps of each filter: the kernel vanishes beyond lag kernel_size - 1
  gated: bool = True
  share_across_layers: bool = True  # the LRA convSPE runs shared one SPE across layers

  def __post_init__(self):
    check(self.num_realizations >= 1, f"spe_conv: num_realizations must be >= 1, got {self.num_realizations}")
    check(self.kernel_size >= 1, f"spe_conv: kernel_size must be >= 1, got {self.kernel_size}")


class StochasticPositionalEncoding(PositionalEncoding):
  """The shared part of sineSPE and convSPE: noise keys, the gate, and applying codes to queries and keys.

  Subclasses implement `draw(side, key)`, the part of the codes that does not depend on positions (sineSPE's
  weighted noise, convSPE's filtered noise on its whole grid), and `codes_at(drawn, positions, side)`, the ungated,
  unscaled codes at any array of positions; they may override `project(drawn, x, positions, side)`, Σ_d x_d · code_d
  per row, where they can do it without forming the [batch, len, heads, head_dim, R] codes (sineSPE folds x into its
  sines first). When every row of a batch has the same positions (sequences not packed: the usual case) the codes
  are formed once, [len, heads, head_dim, R], and contracted with every row instead. Stochastic encodings also
  expose `transform_qk_with_key`, the transform with an explicit noise key, and `codes`, the codes themselves, for
  tests that average over draws.
  """

  relative = True  # in expectation: the codes are a stationary random process
  stochastic: ClassVar[bool] = True

  def __init__(self, options, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    self.noise = NoiseKeys("spe", rngs)
    if options.gated:
      init = nnx.with_partitioning(lambda key, shape: jax.random.normal(key, shape) + 2.0, ("heads", None))
      self.gate = nnx.Param(init(rngs.params(), (dims.num_heads, dims.head_dim)))  # [heads, head_dim]

  @property
  def code_scale(self) -> float:
    """(R·D)^(−1/4): keeps E[q̂·k̂] at √(R/D) Σ_d q_d k_d P_d, the softmax scale 1/√R then gives back 1/√D."""
    return (self.options.num_realizations * self.dims.head_dim) ** -0.25

  def draw(self, side: Side, key: jax.Array):
    """What the codes of `side` ("query" or "key") need from the noise `key` (the same key for both sides)."""
    raise NotImplementedError

  def codes_at(self, drawn, positions: jax.Array, side: Side) -> jax.Array:
    """q̄ or k̄, ungated and unscaled, from `draw`'s result: positions [...] int -> [..., heads, head_dim, R]."""
    raise NotImplementedError

  def project(self, drawn, x: jax.Array, positions: jax.Array, side: Side) -> jax.Array:
    """Σ_d x_d · code_d row by row: x [batch, len, heads, head_dim] float32, positions [batch, len] ->
    [batch, len, heads, R]. This default forms every row's codes."""
    return jnp.einsum("blhd,blhdr->blhr", x, self.codes_at(drawn, positions, side))

  def transform_qk_with_key(self, q, k, q_pos, k_pos, key):
    """q [batch, q_len, heads, head_dim], k [batch, k_len, heads, head_dim] -> q̂, k̂ with R features each:
    q̂ = Σ_d q_d (√σ_d q̄_d + ε_d) · (R·D)^(−1/4), k̂ likewise (without the gate: q̂ = Σ_d q_d q̄_d · (R·D)^(−1/4)).

    Rows that share their positions (sequences not packed: the usual case) share their codes: formed, gated and
    scaled once for the first row, [len, heads, head_dim, R], then contracted with every row. Other batches go
    through `project`, recomputed in the backward pass so that the shared branch does not carry its large
    residuals. Both branches are compiled and one runs; `draw` stays outside them (XLA on CPU runs a convolution's
    gradient far slower inside a conditional)."""
    code_key, gate_key = jax.random.split(key)
    gated, scale = self.options.gated, self.code_scale
    if gated:
      sigma = jax.nn.sigmoid(self.gate[...])  # [heads, head_dim]: weight of the positional part
      shape = (self.dims.num_heads, self.dims.head_dim, self.options.num_realizations)
      epsilon = jax.random.normal(gate_key, shape) * jnp.sqrt(1.0 - sigma)[..., None]  # shared by queries and keys

    def shared_codes(drawn, row, side):  # row [len] -> gated, scaled codes [len, heads, head_dim, R]
      codes = self.codes_at(drawn, row, side)
      return (codes * jnp.sqrt(sigma)[..., None] + epsilon if gated else codes) * scale

    def per_row(drawn, x, positions, side):  # x [batch, len, heads, head_dim] -> [batch, len, heads, R]
      if not gated:
        return self.project(drawn, x, positions, side) * scale
      coded = self.project(drawn, x * jnp.sqrt(sigma), positions, side)
      return (coded + jnp.einsum("blhd,hdr->blhr", x, epsilon)) * scale

    def apply(x, positions, side):
      if self.max_positions is not None:
        check_positions_below(positions, self.max_positions, self.name)
      x32, drawn, row = x.astype(jnp.float32), self.draw(side, code_key), positions[0]
      out = jax.lax.cond(jnp.all(positions == row),
                         lambda: jnp.einsum("blhd,lhdr->blhr", x32, shared_codes(drawn, row, side)),
                         lambda: jax.checkpoint(per_row, static_argnums=3)(drawn, x32, positions, side))
      return out.astype(x.dtype)

    return apply(q, q_pos, "query"), apply(k, k_pos, "key")

  def transform_qk(self, q, k, q_coords, k_coords):
    return self.transform_qk_with_key(q, k, q_coords.positions, k_coords.positions, self.noise())

  def codes(self, q_pos: jax.Array, k_pos: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The codes q̄', k̄' the transform applies (gated and scaled), [batch, len, heads, head_dim, R] each: the
    transform of each unit vector e_d."""
    heads, head_dim = self.dims.num_heads, self.dims.head_dim

    def of_unit(unit):  # [head_dim] -> q̂, k̂ [batch, len, heads, R] of x = e_d at every position
      x = lambda positions: jnp.broadcast_to(unit, (*positions.shape, heads, head_dim))
      return self.transform_qk_with_key(x(q_pos), x(k_pos), q_pos, k_pos, key)

    q_codes, k_codes = jax.vmap(of_unit)(jnp.eye(head_dim))  # [head_dim, batch, len, heads, R] each
    return jnp.moveaxis(q_codes, 0, -2), jnp.moveaxis(k_codes, 0, -2)


def _gains_init(key: jax.Array, shape) -> jax.Array:
  """The paper's initialisation of sineSPE gains: g ~ N(0, 1), then g ← 2g/√‖g‖ over the sines."""
  gains = jax.random.normal(key, shape)
  return 2.0 * gains / jnp.sqrt(jnp.linalg.norm(gains, axis=-1, keepdims=True))


@register("spe_sine")
class SineSpe(StochasticPositionalEncoding):
  Options = SineSpeOptions

  def __init__(self, options: SineSpeOptions, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    shape = (dims.num_heads, dims.head_dim, options.num_sines)  # [heads, head_dim, K]
    axes = ("heads", None, None)
    normal = lambda shift: nnx.with_partitioning(lambda key, s: jax.random.normal(key, s) + shift, axes)
    self.freqs = nnx.Param(normal(-4.0)(rngs.params(), shape))  # f = sigmoid(freqs)/2 ≈ 0.009 cycles/position
    self.offsets = nnx.Param(normal(0.0)(rngs.params(), shape))
    self.gains = nnx.Param(nnx.with_partitioning(_gains_init, axes)(rngs.params(), shape))

  def draw(self, side, key):
    """z [heads, head_dim, K, 2, R]: white noise weighted by each sine's amplitude (the same for both sides)."""
    del side
    amplitude = jax.nn.softplus(self.gains[...]) / math.sqrt(2 * self.options.num_sines)  # [heads, head_dim, K]
    return jax.random.normal(key, (*amplitude.shape, 2, self.options.num_realizations)) * amplitude[..., None, None]

  def sines(self, positions: jax.Array, side: Side) -> jax.Array:
    """Ω at positions [...] -> [..., heads, head_dim, K, 2]: interleaved cos, sin; the codes are Σ_(k, c) Ω z."""
    freqs = jax.nn.sigmoid(self.freqs[...]) / 2  # [heads, head_dim, K]
    offsets = self.offsets[...] if side == "query" else 0.0
    phase = 2 * jnp.pi * freqs * positions.astype(jnp.float32)[..., None, None, None] + offsets
    return jnp.stack([jnp.cos(phase), jnp.sin(phase)], axis=-1)

  def codes_at(self, drawn, positions, side):
    return jnp.einsum("...hdkc,hdkcr->...hdr", self.sines(positions, side), drawn)

  def project(self, drawn, x, positions, side):
    # x enters before z: one contraction over (head_dim, K, 2) per head, no [batch, len, heads, head_dim, R] codes.
    return jnp.einsum("blhdkc,hdkcr->blhr", x[..., None, None] * self.sines(positions, side), drawn)


@register("spe_conv")
class ConvSpe(StochasticPositionalEncoding):
  Options = ConvSpeOptions

  def __init__(self, options: ConvSpeOptions, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    limit = math.sqrt(2.0 / options.kernel_size)
    init = nnx.with_partitioning(nnx.initializers.uniform(limit), ("heads", None, None))
    shape = (dims.num_heads, dims.head_dim, options.kernel_size)  # [heads, head_dim, taps]
    self.query_filter = nnx.Param(init(rngs.params(), shape))
    self.key_filter = nnx.Param(init(rngs.params(), shape))

  @property
  def max_positions(self) -> int:
    return self.dims.max_length

  def draw(self, side, key):
    """The codes at every grid position, [max_length, heads, head_dim, R]: one white noise on the grid
    0 .. max_length + taps − 2 per (head, feature), shared by both sides, filtered by the side's filter."""
    heads, head_dim, taps = self.query_filter.shape
    length = self.dims.max_length
    grid = length + taps - 1
    noise = jax.random.normal(key, (self.options.num_realizations, grid, heads * head_dim))  # [R, grid, channels]
    filters = (self.query_filter if side == "query" else self.key_filter)[...].reshape(heads * head_dim, taps)
    # codes[m] = Σ_t w[t] noise[m + t]: a cross-correlation, by FFT (XLA's depthwise convolution and its gradient
    # are slow on CPU). size ≥ grid, so no lag m < length wraps around.
    size = 1 << (grid - 1).bit_length()
    spectrum = jnp.fft.rfft(noise, n=size, axis=1) * jnp.conj(jnp.fft.rfft(filters.T, n=size, axis=0))
    table = jnp.fft.irfft(spectrum, n=size, axis=1)[:, :length]  # [R, length, channels]
    return table.reshape(-1, length, heads, head_dim).transpose(1, 2, 3, 0)

  def codes_at(self, drawn, positions, side):
    del side
    return drawn[positions]
