"""FIRE (Li et al., ICLR 2024, "Functional Interpolation for Relative Positions Improves Long Context
Transformers"): a learned function of the *normalised* distance,

    bias_h(q, k) = f_θ(ψ(|k − q|) / (ψ(max(q, L)) + ε))_h,   ψ(x) = log(c·x + 1),   ε = 10⁻⁶,

with f_θ an MLP 1 → hidden → heads (ReLU), c > 0 and the threshold L learned. Dividing by ψ(query position) maps
every lag of every query into [0, 1] (progressive interpolation): a model trained on short sequences has seen the
whole input range of f_θ. The threshold keeps short contexts from being stretched: below L the normaliser is the
constant ψ(L), so FIRE is a pure function of the lag there; beyond it, it depends on the query position too — which
is why it is not `relative` (not shift-invariant) and why it is not served as a per-lag table. In the kernels it is
a `ClosedForm` of (query position, key position): each head's row holds (c, L, W₁, b₁, W₂[:, h], b₂[h]) —
3·hidden + 3 scalars — and the MLP is evaluated on the tile (hidden ReLUs per logit), its parameter gradient by the
formula's VJP in-kernel. The paper's choices (its appendix code): hidden 32, c = 0.1 and L = 512 initially (L's scale
learned), ε in the normaliser — without it a learned threshold scale at 0 and a query at position 0 give 0/0 —, |lag| in
causal models (keys never follow the query); a bidirectional model here reads |lag| too (symmetric). c is kept
positive as softplus of the stored parameter (the authors take |c|).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.attention.bias import ClosedForm, Formula
from zoo.config import check
from zoo.positional.base import ModelDims, PositionalEncoding
from zoo.positional.registry import register


@dataclasses.dataclass(frozen=True)
class FireOptions:
  hidden: int = 32  # the MLP's width
  threshold: float = 512.0  # L's initial value
  c: float = 0.1  # c's initial value
  share_across_layers: bool = True

  def __post_init__(self):
    check(self.hidden >= 1, f"fire: hidden must be >= 1, got {self.hidden}")
    check(self.threshold >= 1.0, f"fire: threshold must be >= 1, got {self.threshold}")
    check(self.c > 0.0, f"fire: c must be > 0, got {self.c}")


EPS = 1e-6  # the authors' ε in the normaliser


def psi(x: jax.Array, c: jax.Array) -> jax.Array:
  return jnp.log(c * x + 1.0)


@dataclasses.dataclass(frozen=True)
class FireFormula(Formula):
  hidden: int

  @property
  def num_params(self) -> int:
    return 3 * self.hidden + 3

  def __call__(self, theta, q_pos, k_pos):
    c, threshold = theta[0], theta[1]
    w1, b1, w2 = (theta[2 + i * self.hidden: 2 + (i + 1) * self.hidden] for i in range(3))
    x = psi(jnp.abs(k_pos - q_pos), c) / (psi(jnp.maximum(q_pos, threshold), c) + EPS)  # in [0, 1] for keys up to q
    out = theta[-1]
    for u in range(self.hidden):
      out = out + w2[u] * jnp.maximum(w1[u] * x + b1[u], 0.0)
    return out


@register("fire")
class Fire(PositionalEncoding):
  Options = FireOptions

  def __init__(self, options: FireOptions, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    hidden, heads = options.hidden, dims.num_heads
    param = lambda init, shape, axes: nnx.Param(nnx.with_partitioning(init, axes)(rngs.params(), shape))
    # c and L through softplus / a scale of the initial threshold, so both stay positive.
    self.c = param(nnx.initializers.constant(jnp.log(jnp.expm1(options.c))), (), ())  # softplus(c) = options.c
    self.threshold_scale = param(nnx.initializers.ones, (), ())
    self.w1 = param(nnx.initializers.normal(1.0), (hidden,), (None,))
    self.b1 = param(nnx.initializers.normal(1.0), (hidden,), (None,))
    self.w2 = param(nnx.initializers.normal(hidden ** -0.5), (hidden, heads), (None, "heads"))
    self.b2 = param(nnx.initializers.zeros, (heads,), ("heads",))

  def logit_bias(self, q, k) -> ClosedForm:
    del q, k  # evaluated at the attention call's positions
    heads = self.dims.num_heads
    shared = lambda x: jnp.broadcast_to(x, (heads, *jnp.shape(x)))
    c = jax.nn.softplus(self.c[...])
    threshold = jnp.abs(self.threshold_scale[...]) * self.options.threshold
    params = jnp.concatenate([shared(c)[:, None], shared(threshold)[:, None], shared(self.w1[...]),
                              shared(self.b1[...]), self.w2[...].T, self.b2[...][:, None]], axis=1)
    return ClosedForm(params=params, formula=FireFormula(self.options.hidden))  # [heads, 3·hidden + 3]
