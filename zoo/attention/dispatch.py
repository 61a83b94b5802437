"""Chooses the attention implementation by name, so models say *what* to compute and configs say *how*.

Every implementation takes the same arguments as `reference_attention`: q, k, v, an `AttentionMask`, structured bias
terms and an optional post-softmax scale. One that cannot serve a request (attention dropout, a term type it cannot
evaluate tile by tile) raises a ValueError naming the implementation that can.

* "xla" — the reference: dense logits, O(L²) memory, the only one with attention dropout.
* "chunked" — blockwise online softmax in XLA loops, O(L) memory; the CPU path at long lengths.
* "pallas" — fused flash kernels (Mosaic on TPU, Triton on GPU, the interpreter on CPU), structured terms in-kernel.
* "auto" — the safe choice per call (MaxText's `attention=autoselected` habit): "xla" when attention dropout is on;
  otherwise the Pallas kernel on a TPU / GPU target (the traced-for mesh's devices); on CPU "xla" up to
  `AUTO_DENSE_MAX_ELEMENTS` logits per head and example, "chunked" beyond (short sequences run fastest dense; long ones would not fit).
* "linear" — kernelized attention (Performer FAVOR+ or ReLU features), O(L) time and memory, for SPE; it takes
  extra keyword arguments of its own (`feature_map`, `projection`) and serves no logit bias or post-softmax scale.
"""

from __future__ import annotations

from collections.abc import Callable

from zoo import sharding
from zoo.attention import linear
from zoo.attention.chunked import chunked_attention
from zoo.attention.pallas import flash_attention
from zoo.attention.reference import reference_attention

# On CPU, "auto" stays dense up to this many logits per (example, head): 2048 × 2048 is 16 MiB of float32.
AUTO_DENSE_MAX_ELEMENTS = 2048 * 2048


def auto_attention(q, k, v, **kwargs):
  """Picks an implementation from the platform, the lengths and the request (see the module docstring)."""
  return get(auto_choice(q.shape[1], k.shape[1], kwargs.get("dropout_rate", 0.0)))(q, k, v, **kwargs)


def auto_choice(q_len: int, k_len: int, dropout_rate: float = 0.0, platform: str | None = None) -> str:
  """The implementation name "auto" uses for these lengths on `platform` (default: the target platform, see
  `zoo.sharding.target_platform`: the devices of the mesh being traced for, not the host's)."""
  platform = platform or sharding.target_platform()
  if dropout_rate > 0.0:
    return "xla"
  if platform in ("tpu", "gpu"):
    return "pallas"
  return "xla" if q_len * k_len <= AUTO_DENSE_MAX_ELEMENTS else "chunked"


IMPLEMENTATIONS: dict[str, Callable] = {
    "auto": auto_attention,
    "chunked": chunked_attention,
    "pallas": flash_attention,
    "xla": reference_attention,
    "linear": linear.attention,  # kernelized; extra arguments feature_map ("favor" | "relu") and projection
}


def available() -> tuple[str, ...]:
  return tuple(sorted(IMPLEMENTATIONS))


def get(impl: str) -> Callable:
  """The attention function registered as `impl`; a ValueError lists the valid names otherwise."""
  if impl not in IMPLEMENTATIONS:
    raise ValueError(f"unknown attention impl {impl!r}; valid choices: {', '.join(available())}")
  return IMPLEMENTATIONS[impl]


def attend(q, k, v, *, impl: str = "xla", **kwargs):
  """`get(impl)(q, k, v, **kwargs)`: attention by implementation name."""
  return get(impl)(q, k, v, **kwargs)
