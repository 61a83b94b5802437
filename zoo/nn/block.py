"""The one Transformer block every family is built from: attention + MLP, each in a residual branch.

Pre-LN (default; GPT-2 / T5 / LLaMA): x + f(norm(x)). Post-LN (Vaswani; the URPE paper's setting): norm(x + f(x)).
"""

from __future__ import annotations

import jax
from flax import nnx

from zoo.nn.attention import LayerCache, SelfAttention
from zoo.nn.mlp import Mlp
from zoo.nn.norms import make_norm
from zoo.positional import Coordinates, PositionalEncoding

NORM_POSITIONS = ("pre", "post")


class Block(nnx.Module):
  def __init__(self, *, d_model: int, num_heads: int, head_dim: int, mlp_dim: int, activation: str, norm: str,
               norm_position: str, causal: bool, encoding: PositionalEncoding, attention_impl: str,
               dropout: float, attention_dropout: float, dtype, rngs: nnx.Rngs, feature_map: str = "favor",
               num_features: int = 256, num_kv_heads: int | None = None, qkv_bias: bool = False,
               out_bias: bool = False, mlp_bias: bool = False, scale_logits: bool = True, norm_eps: float = 1e-6,
               qk_rank: int | None = None, attention_logits: str = "content", attention_temperature: float = 1.0):
    if norm_position not in NORM_POSITIONS:
      raise ValueError(f"unknown norm_position {norm_position!r}; valid choices: {', '.join(NORM_POSITIONS)}")
    self.pre_norm = norm_position == "pre"
    self.attention_norm = make_norm(norm, d_model, dtype=dtype, rngs=rngs, epsilon=norm_eps)
    self.attention = SelfAttention(d_model=d_model, num_heads=num_heads, head_dim=head_dim, causal=causal,
                                   encoding=encoding, impl=attention_impl, feature_map=feature_map,
                                   num_features=num_features, dropout_rate=attention_dropout,
                                   num_kv_heads=num_kv_heads, qkv_bias=qkv_bias, out_bias=out_bias,
                                   scale_logits=scale_logits, qk_rank=qk_rank, logits=attention_logits,
                                   temperature=attention_temperature, dtype=dtype, rngs=rngs)
    self.mlp_norm = make_norm(norm, d_model, dtype=dtype, rngs=rngs, epsilon=norm_eps)
    self.mlp = Mlp(d_model, mlp_dim, activation, use_bias=mlp_bias, dtype=dtype, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array, coords: Coordinates, *, cache: LayerCache | None = None,
               **attention_kwargs) -> tuple[jax.Array, LayerCache | None]:
    """x: [batch, length, d_model]; coords: the tokens' positions [batch, length] (and relation);
    attention_kwargs (segment_ids, valid, cache_index) go to `SelfAttention`."""
    attend = lambda h: self.attention(h, coords, cache=cache, **attention_kwargs)
    if self.pre_norm:
      h, cache = attend(self.attention_norm(x))
      x = x + self.dropout(h)
      return x + self.dropout(self.mlp(self.mlp_norm(x))), cache
    h, cache = attend(x)
    x = self.attention_norm(x + self.dropout(h))
    return self.mlp_norm(x + self.dropout(self.mlp(x))), cache
