"""The one Transformer block every family is built from: attention + MLP, each in a residual branch.

Pre-LN (default; GPT-2 / T5 / LLaMA): x + f(norm(x)). Post-LN (Vaswani; the URPE paper's setting): norm(x + f(x)).
With `mlp.dim = 0` the block is attention alone: no MLP and no norm of its own (Wang & E's model has none).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
from flax import nnx

from zoo.config import check
from zoo.nn.attention import AttentionConfig, LayerCache, SelfAttention
from zoo.nn.context import CallContext
from zoo.nn.mlp import Mlp, MlpConfig
from zoo.nn.norms import NORMS, make_norm
from zoo.positional import PositionalEncoding

NORM_POSITIONS = ("pre", "post")


@dataclasses.dataclass(frozen=True)
class NormConfig:
  """A model config's `norm` section: which norm, where the block applies it, and its epsilon (as the pretrained
  model had it: BERT / GPT-2 1e-12 / 1e-5 — it changes the outputs beyond 1e-4)."""

  kind: Literal["layernorm", "rmsnorm", "none"] = "layernorm"
  position: Literal["pre", "post"] = "pre"
  eps: float = 1e-6

  def __post_init__(self):
    check(self.kind in NORMS, f"model.norm: unknown kind {self.kind!r}; valid choices: {', '.join(NORMS)}")
    check(self.position in NORM_POSITIONS,
          f"model.norm: unknown position {self.position!r}; valid choices: {', '.join(NORM_POSITIONS)}")
    check(self.eps > 0, f"model.norm: eps must be > 0, got {self.eps}")

  def build(self, features: int, *, dtype, rngs: nnx.Rngs) -> nnx.Module:
    return make_norm(self.kind, features, dtype=dtype, rngs=rngs, epsilon=self.eps)


class Block(nnx.Module):
  def __init__(self, d_model: int, *, attention: AttentionConfig, mlp: MlpConfig, norm: NormConfig, causal: bool,
               encoding: PositionalEncoding, dropout: float, dtype, rngs: nnx.Rngs):
    self.pre_norm = norm.position == "pre"
    self.attention_norm = norm.build(d_model, dtype=dtype, rngs=rngs)
    self.attention = SelfAttention(d_model, attention, causal=causal, encoding=encoding, dtype=dtype, rngs=rngs)
    feed_forward = mlp.resolved_dim(d_model) > 0  # mlp.dim = 0: none
    self.mlp_norm = norm.build(d_model, dtype=dtype, rngs=rngs) if feed_forward else None
    self.mlp = Mlp(d_model, mlp, dtype=dtype, rngs=rngs) if feed_forward else None
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array, context: CallContext, *,
               cache: LayerCache | None = None) -> tuple[jax.Array, LayerCache | None]:
    """x: [batch, length, d_model]; context: the call's positions and masks, for `SelfAttention`."""
    attend = lambda h: self.attention(h, context, cache=cache)
    if self.pre_norm:
      h, cache = attend(self.attention_norm(x))
      x = x + self.dropout(h)
      return x if self.mlp is None else x + self.dropout(self.mlp(self.mlp_norm(x))), cache
    h, cache = attend(x)
    x = self.attention_norm(x + self.dropout(h))
    return x if self.mlp is None else self.mlp_norm(x + self.dropout(self.mlp(x))), cache
