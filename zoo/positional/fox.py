"""FoX, the Forgetting Transformer (Lin et al., ICLR 2025, "Forgetting Transformer: Softmax Attention with a Forget
Gate"): softmax attention whose logits decay by a data-dependent forget gate.

Per head h, a forget gate of the layer's input x_t [d_model], f_t = σ(w_h · x_t + b_h), and for query i and key j ≤ i
the logit bias

    D_ij = Σ_{l=j+1..i} log f_l = c_i − c_j,   c_t = Σ_{l≤t} log f_l,

a decay over the tokens between them that the paper uses in place of any other positional encoding. As a difference
of per-token running sums it is a `TokenCumulative` term: O(heads · length) operands, evaluated in-kernel by the
Pallas kernels, and in cached decoding the running sum is the cache (each slot keeps its c; a new call continues from
the last one).

As the authors' code (zhixuan-lin/forgetting-transformer, `ForgettingAttentionLayer`, fgate_type="full"): the gate is
its own d_model → heads linear map with a bias (`fgate_proj`), weights drawn N(0, 0.02²) (their initializer_range)
and the bias 0, so every gate starts near σ(0) = 1/2; log f = log σ(·) in float32; each layer has its own gate
(`share_across_layers=False`); RoPE is off by default (`use_rope=False`): the gate is the model's only positional
signal. Unlike their weight-decayed `fgate_proj`, zoo exempts the gate from weight decay as every encoding's
parameters (`zoo.positional.registry.build`).

Defined for causal attention only (`causal_only`): a bidirectional model refuses it. The bias reads no positions, so
shifting every position changes nothing (`relative`). Packed sequences: c runs on across segment boundaries, but for
i, j in one segment c_i − c_j sums the tokens between them, all of that segment, and pairs across segments are
masked, so restarting the sum per segment would change no logit that is used; the same holds for right padding
(padding follows every real token). Precision: c grows with the length (|c_t| ≤ t · max |log f|), so the float32
difference of two large sums loses digits (≈ 1e-4 absolute at |c| ≈ 10³) — as in the authors' kernels, which also
difference float32 cumulative sums.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.attention.bias import TokenCumulative
from zoo.positional.base import Coordinates, ModelDims, PositionalEncoding
from zoo.positional.registry import register

GATE_INIT_STD = 0.02  # the authors' initializer_range for every linear map, the forget gate's included


@dataclasses.dataclass(frozen=True)
class FoxOptions:
  share_across_layers: bool = False  # the authors' gate is one per layer


@register("fox")
class Fox(PositionalEncoding):
  """The forget gate's weights [d_model, heads] and bias [heads]."""

  Options = FoxOptions
  relative = True
  causal_only = True
  cached_sums = 1

  def __init__(self, options: FoxOptions, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    init = nnx.with_partitioning(nnx.initializers.normal(GATE_INIT_STD), ("embed", "heads"))
    self.gate = nnx.Param(init(rngs.params(), (dims.d_model, dims.num_heads)))
    self.gate_bias = nnx.Param(nnx.with_partitioning(nnx.initializers.zeros, ("heads",))(rngs.params(),
                                                                                           (dims.num_heads,)))

  def log_forget(self, features: jax.Array) -> jax.Array:
    """log f_t = log σ(w_h · x_t + b_h): features [batch, length, d_model] -> [batch, heads, length] float32."""
    logits = jnp.einsum("bld,dh->bhl", features.astype(jnp.float32), self.gate[...]) + self.gate_bias[...][:, None]
    return jax.nn.log_sigmoid(logits)

  def running_sum(self, coords: Coordinates) -> jax.Array:
    """c_t = Σ_{l≤t} log f_l over the call's tokens: [batch, heads, length] float32."""
    if coords.features is None:
      raise ValueError("positional encoding 'fox' reads the attention input: its coordinates need `features`")
    return jnp.cumsum(self.log_forget(coords.features), axis=-1)

  def logit_bias(self, q: Coordinates, k: Coordinates) -> TokenCumulative:
    return TokenCumulative(q_sum=self.running_sum(q), k_sum=self.running_sum(k))
