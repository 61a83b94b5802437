"""The positional-encoding contract: a Flax NNX module with validated options and up to four hooks.

An encoding implements any subset of these methods; the shared block calls the ones that exist and knows nothing
else about the encoding (see docs/design.md):

| hook                                  | returns                                          | e.g.                      |
|---------------------------------------|--------------------------------------------------|---------------------------|
| `embed(x, coords)`                    | x with position added to the token features      | sinusoidal, learned       |
| `transform_qk(q, k, q_coords, k_coords)` | new (q, k)                                    | RoPE, xPos, SPE           |
| `logit_bias(q_coords, k_coords)`      | structured term(s) added to the attention logits | ALiBi, T5, KERPLE, FIRE   |
| `prob_scale(q_coords, k_coords)`      | a structured term multiplied after the softmax   | URPE's C                  |

Every hook receives `Coordinates`: explicit integer positions `[batch, length]` (never implied by array index) and,
in a model that has one, a relation between the tokens (a graph: `zoo.positional.Graph`). Bias and scale terms
(`zoo.attention.bias`) are evaluated by the attention implementation at the call's positions; a term that reads a
relation carries it. The attention hooks (`logit_bias`, `prob_scale`) also get the attention layer's input in
`Coordinates.features`, for a term of the tokens themselves (FoX's forget gate, `TokenCumulative`); such an encoding
sets `causal_only` when its term means something only for keys at or before the query.

`transform_qk` normally transforms each key by its own coordinates, so a decoding cache can keep transformed keys. An
encoding whose transform is relative to a reference position of the call (xPos: absolute exponents overflow) sets
`transform_per_call`: then the cache keeps keys as projected, and the attention core applies `transform_qk` to the
new queries and the whole key set (cached and new, at their positions) at every call.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
from flax import nnx, struct

from zoo.attention.bias import Term

HOOKS = ("embed", "transform_qk", "logit_bias", "prob_scale")


@struct.dataclass
class Coordinates:
  """Where tokens are: what every positional hook reads."""

  positions: jax.Array  # [batch, length] int
  relation: Any = None  # a pytree relating the tokens to each other (a graph model's `Graph`), or None
  # The attention layer's input [batch, length, d_model], given to the attention hooks (None for `embed`).
  features: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class ModelDims:
  """The sizes of the model an encoding is built for."""

  num_heads: int
  head_dim: int
  d_model: int
  max_length: int  # the longest sequence (or KV cache) the model is configured for
  causal: bool  # a causal (decoder) model: relative encodings then only see lags <= 0


@dataclasses.dataclass(frozen=True)
class NoOptions:
  """For encodings without options."""


class PositionalEncoding(nnx.Module):
  """Base class of every registered encoding. Subclasses set `Options` and implement their hooks."""

  Options: ClassVar[type] = NoOptions
  # True when the model output depends on positions only through differences k_pos - q_pos, so shifting every
  # position by the same amount changes nothing (the registry-wide tests check it).
  relative: ClassVar[bool] = False
  # True when the hooks need a relation in their coordinates (a graph encoding; the graph model requires one).
  reads_relation: ClassVar[bool] = False
  # True when `transform_qk` of a key depends on the call's queries (it is relative to a reference position of the
  # call): a decoding cache then keeps keys untransformed and the core transforms every key at each call.
  transform_per_call: ClassVar[bool] = False
  # True when the encoding is defined for causal attention only (FoX's decay over the tokens between key and query):
  # a bidirectional model refuses it (`zoo.models.config`).
  causal_only: ClassVar[bool] = False
  # How many `TokenCumulative` bias terms `logit_bias` gives: a decoding cache keeps a running sum per slot for each.
  cached_sums: ClassVar[int] = 0
  name: ClassVar[str] = ""  # set by `register`

  def __init__(self, options, dims: ModelDims, *, rngs: nnx.Rngs):
    del rngs  # encodings with parameters use it
    self.options = options
    self.dims = dims

  @property
  def max_positions(self) -> int | None:
    """Positions must stay below this (a learned table's size); None: any position works."""
    return None

  @property
  def share_across_layers(self) -> bool:
    """Whether one instance serves every layer (encodings with per-layer parameters may opt out)."""
    return getattr(self.options, "share_across_layers", True)


def implements(encoding: PositionalEncoding, hook: str) -> bool:
  """Whether `encoding` implements `hook` (one of HOOKS)."""
  if hook not in HOOKS:
    raise ValueError(f"unknown hook {hook!r}; valid hooks: {', '.join(HOOKS)}")
  return callable(getattr(encoding, hook, None))


def attention_terms(encoding: PositionalEncoding, q: Coordinates,
                    k: Coordinates) -> tuple[tuple[Term, ...], Term | None]:
  """The encoding's logit-bias terms (a tuple, possibly empty) and post-softmax scale (or None) for queries at `q`
  and keys at `k` (with the attention input in their `features`, for encodings that read it)."""
  bias = encoding.logit_bias(q, k) if implements(encoding, "logit_bias") else ()
  scale = encoding.prob_scale(q, k) if implements(encoding, "prob_scale") else None
  return (bias if isinstance(bias, tuple) else (bias,)), scale
