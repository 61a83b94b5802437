"""The positional-encoding contract: a Flax NNX module with validated options and up to four hooks.

An encoding implements any subset of these methods; the shared block calls the ones that exist and knows nothing
else about the encoding (see DESIGN.md):

| hook                                  | returns                                          | e.g.                      |
|---------------------------------------|--------------------------------------------------|---------------------------|
| `embed(x, positions)`                 | x with position added to the token features      | sinusoidal, learned       |
| `transform_qk(q, k, q_pos, k_pos)`    | new (q, k)                                       | RoPE                      |
| `logit_bias(q_pos, k_pos)`            | a structured term added to the attention logits  | ALiBi, T5, RPE, URPE's B  |
| `prob_scale(q_pos, k_pos)`            | a structured term multiplied after the softmax   | URPE's C                  |

Positions are explicit integer arrays `[batch, length]`, never implied by array index.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from flax import nnx

HOOKS = ("embed", "transform_qk", "logit_bias", "prob_scale")


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
