"""Model options shared by every family (validated on construction, see `zoo.config.from_options`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import jax.numpy as jnp
from flax.core import FrozenDict

from zoo import attention, positional
from zoo.config import check

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  vocab_size: int = 256
  num_layers: int = 2
  d_model: int = 128
  num_heads: int = 4
  head_dim: int | None = None  # None: d_model // num_heads
  mlp_dim: int | None = None  # None: 4 · d_model
  activation: Literal["gelu", "swiglu"] = "gelu"
  norm: Literal["layernorm", "rmsnorm"] = "layernorm"
  norm_position: Literal["pre", "post"] = "pre"
  dropout: float = 0.0
  attention_dropout: float = 0.0
  pe: str = "rope"  # a name from zoo.positional.available()
  pe_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  max_length: int = 512  # the longest sequence / KV cache; sizes learned absolute tables
  attention_impl: str = "xla"  # a name from zoo.attention.available()
  dtype: Literal["float32", "bfloat16"] = "float32"  # compute dtype; parameters stay float32

  def __post_init__(self):
    for name in ("vocab_size", "num_layers", "d_model", "num_heads", "max_length"):
      check(getattr(self, name) >= 1, f"model: {name} must be >= 1, got {getattr(self, name)}")
    check(self.head_dim is not None or self.d_model % self.num_heads == 0,
          f"model: num_heads ({self.num_heads}) must divide d_model ({self.d_model}), or set head_dim")
    for name in ("dropout", "attention_dropout"):
      check(0.0 <= getattr(self, name) < 1.0, f"model: {name} must be in [0, 1), got {getattr(self, name)}")
    positional.parse_options(self.pe, self.pe_options)  # unknown names / options fail here
    attention.get(self.attention_impl)
    object.__setattr__(self, "pe_options", FrozenDict(self.pe_options))  # hashable, so the model can be static

  @property
  def resolved_head_dim(self) -> int:
    return self.head_dim or self.d_model // self.num_heads

  @property
  def resolved_mlp_dim(self) -> int:
    return self.mlp_dim or 4 * self.d_model

  @property
  def compute_dtype(self):
    return DTYPES[self.dtype]


@dataclasses.dataclass(frozen=True)
class EncoderConfig(TransformerConfig):
  pe: str = "sinusoidal"
  # token: per-token logits; sequence: one label per sequence; dual: one label per pair of sequences
  # (tokens [batch, 2, length], LRA Retrieval style).
  head: Literal["token", "sequence", "dual"] = "sequence"
  pooling: Literal["cls", "mean"] = "mean"  # sequence / dual heads
  num_classes: int = 2

  def __post_init__(self):
    super().__post_init__()
    check(self.num_classes >= 1, f"model: num_classes must be >= 1, got {self.num_classes}")


@dataclasses.dataclass(frozen=True)
class DecoderConfig(TransformerConfig):
  tie_embeddings: bool = True  # the output projection is the transposed token embedding
