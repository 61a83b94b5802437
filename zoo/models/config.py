"""Model options shared by every family (validated on construction, see `zoo.config.from_options`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import jax.numpy as jnp
from flax.core import FrozenDict

from zoo import attention, positional
from zoo.config import check
from zoo.models.scan import REMAT_POLICIES
from zoo.nn.attention import carried_core_options, incompatibility

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  vocab_size: int = 256
  num_layers: int = 2
  d_model: int = 128
  num_heads: int = 4
  head_dim: int | None = None  # None: d_model // num_heads
  # Grouped-query attention (Ainslie et al. 2023): num_heads / num_kv_heads query heads share each key/value head.
  num_kv_heads: int | None = None  # None: num_heads (multi-head attention)
  mlp_dim: int | None = None  # None: 4 · d_model
  activation: Literal["gelu", "gelu_tanh", "relu", "swiglu", "geglu_tanh"] = "gelu"  # see zoo.nn.mlp
  norm: Literal["layernorm", "rmsnorm"] = "layernorm"
  norm_position: Literal["pre", "post"] = "pre"
  norm_eps: float = 1e-6
  # Biases the pretrained families carry (GPT-2 / BERT: all; Qwen2: q, k, v only); zoo's own models have none.
  qkv_bias: bool = False
  out_bias: bool = False  # the attention output projection
  mlp_bias: bool = False
  scale_logits: bool = True  # q·k / √d; False: unscaled logits (T5 folds the scale into its initialisation)
  scale_embeddings: bool = True  # token embeddings × √d_model (zoo's models); False as in GPT-2 / LLaMA / BERT / T5
  embedding_norm: bool = False  # a norm after the token + absolute position embeddings (BERT / RoBERTa)
  dropout: float = 0.0
  attention_dropout: float = 0.0
  pe: str = "rope"  # a name from zoo.positional.available()
  pe_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  max_length: int = 512  # the longest sequence / KV cache; sizes learned absolute tables
  # > 0: train on sorted random positions from 0..randomized_positions − 1 (Ruoss et al. 2023), evaluate on 0..L − 1
  randomized_positions: int = 0
  attention_impl: str = "xla"  # a name from zoo.attention.available()
  feature_map: Literal["favor", "relu"] = "favor"  # attention_impl="linear" only: Performer FAVOR+ or relu + 1e-3
  num_features: int = 256  # FAVOR+ random features (attention_impl="linear", feature_map="favor")
  # W_Q, W_K of each head factorised d_model × qk_rank · qk_rank × head_dim, so q·kᵀ has rank <= qk_rank (Kajitsuka &
  # Sato's rank-1 attention is qk_rank=1); None: full rank.
  qk_rank: int | None = None
  # content: logits q·kᵀ/√d + positional bias; positional: the bias alone, no query or key projection (Wang & E's
  # dot-product-free attention).
  attention_logits: Literal["content", "positional"] = "content"
  attention_temperature: float = 1.0  # divides q·kᵀ/√d (not the bias): → 0 approaches hardmax attention
  dtype: Literal["float32", "bfloat16"] = "float32"  # compute dtype; parameters stay float32
  # The blocks as one `jax.lax.scan` over parameters stacked along a "layers" axis: compile time independent of
  # depth (zoo.models.scan); checkpoints of either layout load into the other.
  scan_layers: bool = False
  remat: Literal["none", "dots_saveable", "full"] = "none"  # per-block jax.checkpoint policy (memory for time)
  relation: ClassVar[bool] = False  # the family relates its tokens by more than positions (a graph), for the hooks

  def __post_init__(self):
    for name in ("vocab_size", "num_layers", "d_model", "num_heads", "max_length"):
      check(getattr(self, name) >= 1, f"model: {name} must be >= 1, got {getattr(self, name)}")
    for name in ("head_dim", "mlp_dim"):  # None derives the size; 0 or less would fail deep inside JAX's init
      check(getattr(self, name) is None or getattr(self, name) >= 1,
            f"model: {name} must be None (derived) or >= 1, got {getattr(self, name)}")
    check(self.head_dim is not None or self.d_model % self.num_heads == 0,
          f"model: num_heads ({self.num_heads}) must divide d_model ({self.d_model}), or set head_dim")
    check(self.num_kv_heads is None or (self.num_kv_heads >= 1 and self.num_heads % self.num_kv_heads == 0),
          f"model: num_kv_heads ({self.num_kv_heads}) must divide num_heads ({self.num_heads})")
    check(self.norm_eps > 0, f"model: norm_eps must be > 0, got {self.norm_eps}")
    for name in ("dropout", "attention_dropout"):
      check(0.0 <= getattr(self, name) < 1.0, f"model: {name} must be in [0, 1), got {getattr(self, name)}")
    check(self.randomized_positions == 0 or self.randomized_positions >= self.max_length,
          f"model: randomized_positions must be 0 (off) or >= max_length ({self.max_length}), got "
          f"{self.randomized_positions}")
    check(self.remat in REMAT_POLICIES,
          f"model: unknown remat {self.remat!r}; valid choices: {', '.join(REMAT_POLICIES)}")
    positional.parse_options(self.pe, self.pe_options)  # unknown names / options fail here
    check(self.qk_rank is None or 1 <= self.qk_rank <= self.resolved_head_dim,
          f"model: qk_rank must be None (full rank) or in 1..head_dim ({self.resolved_head_dim}), got {self.qk_rank}")
    check(self.attention_temperature > 0, f"model: attention_temperature must be > 0, got "
                                          f"{self.attention_temperature}")
    if self.attention_logits == "positional":
      check_positional_logits(self)
    check_attention_core(self)
    object.__setattr__(self, "pe_options", FrozenDict(self.pe_options))  # hashable, so the model can be static

  @property
  def resolved_head_dim(self) -> int:
    return self.head_dim or self.d_model // self.num_heads

  @property
  def resolved_kv_heads(self) -> int:
    return self.num_kv_heads or self.num_heads

  @property
  def resolved_mlp_dim(self) -> int:
    return self.mlp_dim or 4 * self.d_model

  @property
  def compute_dtype(self):
    return DTYPES[self.dtype]


# The options of attention cores a model config carries as flat fields (linear attention's feature map).
CORE_FIELDS = ("feature_map", "num_features")


def check_attention_core(config: TransformerConfig) -> None:
  """The core must exist, take the core options set here, serve the encoding's terms (`compatible`, which names
  the cores and encodings that work) and, with attention dropout, have it."""
  core = attention.core_class(config.attention_impl)
  carried = carried_core_options(config, config.attention_impl)
  defaults = {f.name: f.default for f in dataclasses.fields(TransformerConfig) if f.name in CORE_FIELDS}
  unused = [name for name in CORE_FIELDS if name not in carried and getattr(config, name) != defaults[name]]
  takers = [name for name, cls in sorted(attention.CORES.items())
            if set(CORE_FIELDS) <= {f.name for f in dataclasses.fields(cls.Options)}]
  check(not unused, f"model: {' and '.join(CORE_FIELDS)} apply only with attention_impl="
                    f"{' or '.join(map(repr, takers))} (got attention_impl={config.attention_impl!r})")
  attention.build(config.attention_impl, carried)  # the core's own validation of its options
  reason = incompatibility(config.pe, config.attention_impl, config.pe_options, relation=config.relation)
  check(reason is None, f"model: {reason}")
  serving = [name for name, cls in sorted(attention.CORES.items()) if cls.dropout]
  check(config.attention_dropout == 0.0 or core.dropout,
        f"model: attention_dropout needs the attention matrix, which attention_impl={config.attention_impl!r} does "
        f"not drop out of; it must be 0, or attention_impl {' or '.join(map(repr, serving))}")


def check_positional_logits(config: TransformerConfig) -> None:
  """Dot-product-free attention has no queries or keys: only an encoding whose position enters as a logit bias (and
  transforms no queries or keys) gives it anything to attend by."""
  def usable(name: str) -> bool:
    cls = positional.get(name)
    return positional.implements(cls, "logit_bias") and not positional.implements(cls, "transform_qk")
  if not usable(config.pe):
    raise ValueError(f"model: attention_logits='positional' needs an encoding with a logit_bias hook and no "
                     f"transform_qk (got pe={config.pe!r}); valid choices: "
                     f"{', '.join(n for n in positional.available() if usable(n))}")
  check(config.qk_rank is None, "model: qk_rank needs attention_logits='content' (positional logits have no W_Q, W_K)")


@dataclasses.dataclass(frozen=True)
class EncoderConfig(TransformerConfig):
  pe: str = "sinusoidal"
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


@dataclasses.dataclass(frozen=True)
class DecoderConfig(TransformerConfig):
  tie_embeddings: bool = True  # the output projection is the transposed token embedding
