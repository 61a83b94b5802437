"""KERPLE (Chi et al., NeurIPS 2022): relative biases from conditionally positive definite kernels of the distance,
with two learned positive parameters per head — closed forms of the lag, no table:

* `kerple_log` — bias = −r₁ · log(1 + r₂ · |k_pos − q_pos|)   (the paper's best performer)
* `kerple_power` — bias = −r₁ · |k_pos − q_pos|^r₂, 0 < r₂ ≤ 2

Initialisation as in the authors' code (chijames/KERPLE, `ParallelKerpleLog` / `ParallelKerplePower`): the log
kernel's scale p = r₁ ~ U(0, 2) and a = r₂ ~ U(0, 1); the power kernel's scale a = r₁ ~ U(0, 1) and exponent
p = r₂ ~ U(0, 2). Both are kept ≥ 0.01 (the power exponent also ≤ 2). The authors clamp the *stored* value before each
use, so a parameter that a step pushed out sits on the boundary and keeps the gradient it has there; here the value
used is clamped with its gradient passed straight through (d clamp / dx := 1), which gives the same forward value and
the same gradient, so an escaped parameter can return (a plain `clip` would give it exactly zero gradient forever).
Unlike the authors' in-place clamp, the stored number itself is not reset to the boundary.
Both run in every attention core, in the Pallas kernels as a `ClosedForm` (formula and parameter gradient in-kernel).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.attention.bias import ClosedForm, Formula
from zoo.positional.base import ModelDims, PositionalEncoding
from zoo.positional.registry import register

EPS = 0.01  # the authors' lower clamp of both parameters


@dataclasses.dataclass(frozen=True)
class KerpleLogFormula(Formula):
  num_params = 2

  def __call__(self, theta, q_pos, k_pos):
    r1, r2 = theta
    return -r1 * jnp.log1p(r2 * jnp.abs(k_pos - q_pos))


@dataclasses.dataclass(frozen=True)
class KerplePowerFormula(Formula):
  num_params = 2

  def __call__(self, theta, q_pos, k_pos):
    r1, r2 = theta
    distance = jnp.abs(k_pos - q_pos)
    # |lag|^r2 via exp(r2 · log |lag|), 0 at lag 0 (a safe log keeps the gradient wrt r2 finite there).
    safe = jnp.where(distance > 0, distance, 1.0)
    return -r1 * jnp.where(distance > 0, jnp.exp(r2 * jnp.log(safe)), 0.0)


def straight_through_clip(x: jax.Array, low, high) -> jax.Array:
  """clip(x, low, high) in the forward pass, the identity's gradient in the backward pass."""
  return x + jax.lax.stop_gradient(jnp.clip(x, low, high) - x)


class Kerple(PositionalEncoding):
  """Per-head parameters `[heads, 2]` = (r₁, r₂), shared by every layer."""

  relative = True
  formula: Formula
  max_r2: float = float("inf")
  init_high = (2.0, 1.0)  # r₁ ~ U(0, init_high[0]), r₂ ~ U(0, init_high[1])

  def __init__(self, options, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)

    def init(key, shape):
      return jax.random.uniform(key, shape) * jnp.array(self.init_high)

    self.params = nnx.Param(nnx.with_partitioning(init, ("heads", None))(rngs.params(), (dims.num_heads, 2)))

  def logit_bias(self, q, k) -> ClosedForm:
    del q, k  # evaluated at the attention call's positions
    params = straight_through_clip(self.params[...], EPS, jnp.array([jnp.inf, self.max_r2]))  # [heads, 2]
    return ClosedForm(params=params, formula=self.formula)


@register("kerple_log")
class KerpleLog(Kerple):
  formula = KerpleLogFormula()


@register("kerple_power")
class KerplePower(Kerple):
  formula = KerplePowerFormula()
  max_r2 = 2.0
  init_high = (1.0, 2.0)
