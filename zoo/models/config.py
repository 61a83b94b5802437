"""Model options shared by every family (validated on construction, see `zoo.config.from_options`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import jax.numpy as jnp
from flax.core import FrozenDict

from zoo import positional
from zoo.config import check
from zoo.models.scan import REMAT_POLICIES
from zoo.nn import AttentionConfig, MlpConfig, NormConfig
from zoo.nn.attention import incompatibility

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class PositionalConfig:
  """A model config's `positional` section: the encoding (a name from zoo.positional.available()) and its options."""

  name: str = "rope"
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  # > 0: train on sorted random positions from 0..randomized_positions − 1 (Ruoss et al. 2023), evaluate on 0..L − 1
  randomized_positions: int = 0

  def __post_init__(self):
    positional.parse_options(self.name, self.options)  # unknown names / options fail here
    check(self.randomized_positions >= 0,
          f"model.positional: randomized_positions must be >= 0, got {self.randomized_positions}")
    object.__setattr__(self, "options", FrozenDict(self.options))  # hashable, so the model can be static


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """The options every family shares: sizes here, each layer's parts in their own sections (`attention`, `mlp`,
  `norm`, `positional`), which the modules take as they are."""

  vocab_size: int = 256
  num_layers: int = 2
  d_model: int = 128
  max_length: int = 512  # the longest sequence / KV cache; sizes learned absolute tables
  attention: AttentionConfig = dataclasses.field(default_factory=AttentionConfig)
  mlp: MlpConfig = dataclasses.field(default_factory=MlpConfig)
  norm: NormConfig = dataclasses.field(default_factory=NormConfig)
  positional: PositionalConfig = dataclasses.field(default_factory=PositionalConfig)
  scale_embeddings: bool = True  # token embeddings × √d_model (zoo's models); False as in GPT-2 / LLaMA / BERT / T5
  embedding_norm: bool = False  # a norm after the token + absolute position embeddings (BERT / RoBERTa)
  dropout: float = 0.0  # on the embeddings and each residual branch
  dtype: Literal["float32", "bfloat16"] = "float32"  # compute dtype; parameters stay float32
  # The blocks as one `jax.lax.scan` over parameters stacked along a "layers" axis: compile time independent of
  # depth (zoo.models.scan); checkpoints of either layout load into the other.
  scan_layers: bool = False
  remat: Literal["none", "dots_saveable", "full"] = "none"  # per-block jax.checkpoint policy (memory for time)
  relation: ClassVar[bool] = False  # the family relates its tokens by more than positions (a graph), for the hooks

  def __post_init__(self):
    for name in ("vocab_size", "num_layers", "d_model", "max_length"):
      check(getattr(self, name) >= 1, f"model: {name} must be >= 1, got {getattr(self, name)}")
    a = self.attention
    check(a.head_dim is not None or self.d_model % a.num_heads == 0,
          f"model: attention.num_heads ({a.num_heads}) must divide d_model ({self.d_model}), or set "
          f"attention.head_dim")
    check(0.0 <= self.dropout < 1.0, f"model: dropout must be in [0, 1), got {self.dropout}")
    r = self.positional.randomized_positions
    check(r == 0 or r >= self.max_length, f"model: positional.randomized_positions must be 0 (off) or >= max_length "
                                          f"({self.max_length}), got {r}")
    check(self.remat in REMAT_POLICIES,
          f"model: unknown remat {self.remat!r}; valid choices: {', '.join(REMAT_POLICIES)}")
    head_dim = a.resolved_head_dim(self.d_model)
    check(a.qk_rank is None or a.qk_rank <= head_dim,
          f"model: attention.qk_rank must be None (full rank) or in 1..head_dim ({head_dim}), got {a.qk_rank}")
    if a.logits == "positional":
      check_positional_logits(self.positional.name)
    check(a.window is None or self.causal_attention,
          f"model: attention.window needs causal attention (the decoder family, or the encoder family's causal=True), "
          f"got window={a.window}")
    check(self.causal_attention or not positional.get(self.positional.name).causal_only,
          f"model: positional encoding {self.positional.name!r} is defined for causal attention only (a decoder, or "
          f"an encoder with causal=True)")
    reason = incompatibility(self.positional.name, a.impl, self.positional.options, relation=self.relation)
    check(reason is None, f"model: {reason}")

  @property
  def compute_dtype(self):
    return DTYPES[self.dtype]

  @property
  def causal_attention(self) -> bool:
    """Whether the family's attention is causal (the decoder's always, the encoder's by option, a graph's never)."""
    return False


def check_positional_logits(pe: str) -> None:
  """Dot-product-free attention has no queries or keys: only an encoding whose position enters as a logit bias (and
  transforms no queries or keys) gives it anything to attend by."""
  def usable(name: str) -> bool:
    cls = positional.get(name)
    return positional.implements(cls, "logit_bias") and not positional.implements(cls, "transform_qk")
  if not usable(pe):
    raise ValueError(f"model: attention.logits='positional' needs an encoding with a logit_bias hook and no "
                     f"transform_qk (got positional.name={pe!r}); valid choices: "
                     f"{', '.join(n for n in positional.available() if usable(n))}")


SECTIONS = ("attention", "mlp", "norm", "positional")  # the model config's fields that are option dataclasses

# Where each key of the flat model config (before the sections) lives now: the one map `nest` (stored configs) and
# `refuse_flat` (a person's config) read.
MOVED = {
    "num_heads": "attention.num_heads", "head_dim": "attention.head_dim", "num_kv_heads": "attention.num_kv_heads",
    "attention_impl": "attention.impl", "feature_map": "attention.core.feature_map",
    "num_features": "attention.core.num_features", "attention_dropout": "attention.dropout",
    "qkv_bias": "attention.qkv_bias", "out_bias": "attention.out_bias", "scale_logits": "attention.scale_logits",
    "qk_rank": "attention.qk_rank", "attention_logits": "attention.logits",
    "attention_temperature": "attention.temperature",
    "mlp_dim": "mlp.dim", "activation": "mlp.activation", "mlp_bias": "mlp.bias",
    "norm_position": "norm.position", "norm_eps": "norm.eps",
    "pe": "positional.name", "pe_options": "positional.options",
    "randomized_positions": "positional.randomized_positions",
}


def open_mappings() -> dict[str, dict[str, dict]]:
  """section -> its mapping-valued fields (the core's options, the encoding's), empty. Every config holds them — the
  config files, `configs/base.py` and stored configs read by `nest` — because a dotted override can only set a key
  inside a mapping that exists (`--config.model.attention.core.num_features=64`)."""
  sections = {f.name: f.default_factory() for f in dataclasses.fields(TransformerConfig) if f.name in SECTIONS}
  return {name: {f.name: {} for f in dataclasses.fields(section) if isinstance(getattr(section, f.name), Mapping)}
          for name, section in sections.items()}


def nest(model: Mapping[str, Any]) -> dict[str, Any]:
  """A stored model config (a checkpoint's, a workdir's, a converted folder's) in today's shape: flat keys written
  before the sections move into them (`MOVED`; `norm` as a name becomes `norm.kind`), nested ones stay, and the
  sections' open mappings are there (`open_mappings`)."""
  nested = {k: dict(v) if isinstance(v, Mapping) else v for k, v in model.items() if k not in MOVED}
  if isinstance(nested.get("norm"), str):
    nested["norm"] = {"kind": nested["norm"]}
  for old, new in MOVED.items():
    if old in model:
      *parents, key = new.split(".")
      section = nested
      for name in parents:
        section = section.setdefault(name, {})
      section[key] = dict(model[old]) if isinstance(model[old], Mapping) else model[old]
  for name, mappings in open_mappings().items():
    if mappings:
      nested[name] = {**mappings, **nested.get(name, {})}
  return nested


def merge(model: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
  """`model` with `overrides` over it: a section (`attention`, ...) is updated key by key, any other key replaced."""
  merged = dict(model)
  for key, value in overrides.items():
    section = key in SECTIONS and isinstance(value, Mapping)
    merged[key] = {**(model.get(key) or {}), **value} if section else value
  return merged


def refuse_flat(model: Mapping[str, Any]) -> None:
  """One line naming the new key of each flat key a person's config still sets (`model.num_heads` moved)."""
  moved = [f"model.{old} moved to model.{MOVED[old]}" for old in model if old in MOVED]
  if isinstance(model.get("norm"), str):
    moved.append("model.norm (a name) moved to model.norm.kind")
  check(not moved, "; ".join(moved))


@dataclasses.dataclass(frozen=True)
class EncoderConfig(TransformerConfig):
  positional: PositionalConfig = dataclasses.field(default_factory=lambda: PositionalConfig("sinusoidal"))
  # token: per-token logits; sequence: one label per sequence; dual: one label per pair of sequences
  # (tokens [batch, 2, length], LRA Retrieval style).
  # none: the final features [batch, length, d_model] (a pretrained encoder whose own head zoo does not carry).
  head: Literal["token", "sequence", "dual", "none"] = "sequence"
  pooling: Literal["cls", "mean"] = "mean"  # sequence / dual heads
  num_classes: int = 2
  type_vocab_size: int = 0  # > 0: learned token-type embeddings added to the input (BERT's sentence A / B)
  # True: causal attention, so the token head's output at t reads only tokens <= t (sequence-to-sequence regression
  # or tagging by a causal model, as in Wang & E's sparse-memory study).
  causal: bool = False

  def __post_init__(self):
    super().__post_init__()
    check(self.num_classes >= 1, f"model: num_classes must be >= 1, got {self.num_classes}")
    check(self.type_vocab_size >= 0, f"model: type_vocab_size must be >= 0, got {self.type_vocab_size}")
    check(not self.causal or self.head == "token", f"model: causal=True needs head='token' (a pooled head reads "
                                                   f"every position), got head={self.head!r}")

  @property
  def causal_attention(self) -> bool:
    return self.causal


@dataclasses.dataclass(frozen=True)
class DecoderConfig(TransformerConfig):
  tie_embeddings: bool = True  # the output projection is the transposed token embedding

  @property
  def causal_attention(self) -> bool:
    return True
