"""Chooses the attention implementation by name, so models say *what* to compute and configs say *how*.

Every implementation takes the same arguments as `reference_attention`: q, k, v, an `AttentionMask`, structured bias
terms and an optional post-softmax scale; an implementation may take extra keyword arguments of its own (linear:
`feature_map`, `projection`). Later implementations (chunked XLA, Pallas flash) register here.
"""

from __future__ import annotations

from collections.abc import Callable

from zoo.attention import linear
from zoo.attention.reference import reference_attention

IMPLEMENTATIONS: dict[str, Callable] = {
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
