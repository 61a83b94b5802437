"""URPE (Luo et al., NeurIPS 2022): `(softmax(QKᵀ/√d + B) ⊙ C) · V`.

B is a learned relative bias (`rpe` per-lag table or `t5_bias` buckets) and C a second per-head Toeplitz table over
the same lag index, applied after the softmax. C starts at all ones, so an untrained URPE equals its RPE; it has no
activation and may turn negative, which is what lets attention rows stop summing to one.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from flax import nnx

from zoo.attention.bias import RelativeTable
from zoo.config import check
from zoo.positional.base import ModelDims, PositionalEncoding
from zoo.positional.registry import build, register
from zoo.positional import relative_bias as _relative_bias  # noqa: F401  (registers rpe, t5_bias)

_BIAS_DEFAULT_DISTANCE = {"rpe": 127, "t5_bias": 128}


@dataclasses.dataclass(frozen=True)
class UrpeOptions:
  bias: Literal["rpe", "t5_bias"] = "rpe"  # the paper's released code uses one entry per lag
  max_distance: int | None = None  # None: the default of `bias` (rpe 127, t5_bias 128)
  num_buckets: int = 32  # t5_bias only
  bidirectional: bool | None = None  # t5_bias only; None: follows the model's causality
  share_across_layers: bool = True  # the paper builds B and C once per forward and hands them to every layer

  def __post_init__(self):
    check(self.bias == "t5_bias" or (self.num_buckets == 32 and self.bidirectional is None),
          "urpe: num_buckets and bidirectional apply only with bias='t5_bias'")

  def bias_options(self) -> dict:
    """The options of the underlying B encoding."""
    options = {"max_distance": self.max_distance or _BIAS_DEFAULT_DISTANCE[self.bias],
               "share_across_layers": self.share_across_layers}
    if self.bias == "t5_bias":
      options.update(num_buckets=self.num_buckets, bidirectional=self.bidirectional)
    return options


@register("urpe")
class Urpe(PositionalEncoding):
  Options = UrpeOptions
  relative = True

  def __init__(self, options: UrpeOptions, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    self.b = build(options.bias, options.bias_options(), dims, rngs=rngs)  # an rpe or t5_bias encoding
    init = nnx.with_partitioning(nnx.initializers.ones, ("heads", None))
    self.c = nnx.Param(init(rngs.params(), (dims.num_heads, self.b.index.rows)))  # [heads, rows]

  def logit_bias(self, q, k) -> RelativeTable:
    return self.b.logit_bias(q, k)

  def prob_scale(self, q, k) -> RelativeTable:
    del q, k  # evaluated at the attention call's positions
    return RelativeTable(table=self.c[...], index_fn=self.b.index)
