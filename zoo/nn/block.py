"""The one Transformer block every family is built from: attention + MLP, each in a residual branch.

Pre-LN (default; GPT-2 / T5 / LLaMA): x + f(norm(x)). Post-LN (Vaswani; the URPE paper's setting): norm(x + f(x)).
"""

from __future__ import annotations

import jax
from flax import nnx

from zoo.nn.attention import AttentionOptions, LayerCache, SelfAttention
from zoo.nn.context import CallContext
from zoo.nn.mlp import Mlp
from zoo.nn.norms import make_norm
from zoo.positional import PositionalEncoding

NORM_POSITIONS = ("pre", "post")


class Block(nnx.Module):
  def __init__(self, *, d_model: int, attention: AttentionOptions, encoding: PositionalEncoding, mlp_dim: int,
               activation: str, norm: str, norm_position: str, dropout: float, dtype, rngs: nnx.Rngs,
               mlp_bias: bool = False, norm_eps: float = 1e-6):
    if norm_position not in NORM_POSITIONS:
      raise ValueError(f"unknown norm_position {norm_position!r}; valid choices: {', '.join(NORM_POSITIONS)}")
    self.pre_norm = norm_position == "pre"
    self.attention_norm = make_norm(norm, d_model, dtype=dtype, rngs=rngs, epsilon=norm_eps)
    self.attention = SelfAttention(d_model, attention, encoding=encoding, dtype=dtype, rngs=rngs)
    self.mlp_norm = make_norm(norm, d_model, dtype=dtype, rngs=rngs, epsilon=norm_eps)
    self.mlp = Mlp(d_model, mlp_dim, activation, use_bias=mlp_bias, dtype=dtype, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array, context: CallContext, *,
               cache: LayerCache | None = None) -> tuple[jax.Array, LayerCache | None]:
    """x: [batch, length, d_model]; context: the call's positions and masks, for `SelfAttention`."""
    attend = lambda h: self.attention(h, context, cache=cache)
    if self.pre_norm:
      h, cache = attend(self.attention_norm(x))
      x = x + self.dropout(h)
      return x + self.dropout(self.mlp(self.mlp_norm(x))), cache
    h, cache = attend(x)
    x = self.attention_norm(x + self.dropout(h))
    return self.mlp_norm(x + self.dropout(self.mlp(x))), cache
