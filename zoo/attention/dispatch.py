"""Attention implementations as small declared cores, chosen by name, so models say *what* to compute and configs
say *how*.

Every implementation takes the same arguments as `reference_attention`: q, k, v, an `AttentionMask`, structured bias
terms and an optional post-softmax scale. Each declares in a `Core` what it serves — which term types
(`zoo.attention.bias`), whether it has attention dropout, which decoding cache it keeps — and `attend` refuses a
request a core does not serve with a ValueError naming the cores that do. Tests and `auto` choose by these
declarations, never by name lists.

* "xla" — the reference: dense logits, O(L²) memory, every term type, the only one with attention dropout.
* "chunked" — blockwise online softmax in XLA loops, O(L) memory (plus a relation's own O(L²) array); every term type.
* "pallas" — fused flash kernels (Mosaic on TPU, Triton on GPU, the interpreter on CPU), `KernelTerm`s in-kernel.
* "auto" — the safe choice per call (MaxText's `attention=autoselected` habit): "xla" when attention dropout is on;
  otherwise the Pallas kernel on a TPU / GPU target (the traced-for mesh's devices) when it serves the terms; on CPU
  "xla" up to `AUTO_DENSE_MAX_ELEMENTS` logits per head and example, "chunked" beyond (short sequences run fastest
  dense; long ones would not fit).
* "linear" — kernelized attention (Performer FAVOR+ or ReLU features), O(L) time and memory, for SPE; it takes
  extra keyword arguments of its own (`feature_map`, `projection`), serves no term and keeps a recurrent state
  instead of keys and values when decoding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Literal

from zoo import sharding
from zoo.attention import linear
from zoo.attention.bias import KernelTerm, Term
from zoo.attention.chunked import chunked_attention
from zoo.attention.pallas import flash_attention
from zoo.attention.reference import reference_attention

# On CPU, "auto" stays dense up to this many logits per (example, head): 2048 × 2048 is 16 MiB of float32.
AUTO_DENSE_MAX_ELEMENTS = 2048 * 2048


@dataclasses.dataclass(frozen=True)
class Core:
  """One attention implementation and what it serves."""

  fn: Callable
  terms: tuple[type[Term], ...]  # the term types it evaluates (as logit bias and as post-softmax scale)
  dropout: bool = False  # attention dropout
  cache: Literal["kv", "state"] = "kv"  # decoding keeps keys and values, or a recurrent state (linear attention)

  def serves(self, term: Term) -> bool:
    return isinstance(term, self.terms)

  def refusal(self, bias: Sequence[Term], scale: Term | None, dropout_rate: float) -> str | None:
    """Why this core cannot serve the request, or None."""
    if dropout_rate > 0.0 and not self.dropout:
      return f"has no attention dropout (got dropout_rate={dropout_rate})"
    for term in (*bias, *([] if scale is None else [scale])):
      if not self.serves(term):
        return f"cannot evaluate a {type(term).__name__} term"
    return None


CORES: dict[str, Core] = {
    "xla": Core(reference_attention, terms=(Term,), dropout=True),
    "chunked": Core(chunked_attention, terms=(Term,)),
    "pallas": Core(flash_attention, terms=(KernelTerm,)),
    "linear": Core(linear.attention, terms=(), cache="state"),  # extra arguments feature_map and projection
}


def cores_serving(bias: Sequence[Term] = (), scale: Term | None = None, dropout_rate: float = 0.0) -> list[str]:
  """The names of the cores that serve this request."""
  return [name for name, core in sorted(CORES.items()) if core.refusal(bias, scale, dropout_rate) is None]


def auto_attention(q, k, v, **kwargs):
  """Picks an implementation from the platform, the lengths and the request (see the module docstring)."""
  terms = (*kwargs.get("bias", ()), *([] if kwargs.get("scale") is None else [kwargs["scale"]]))
  return CORES[auto_choice(q.shape[1], k.shape[1], kwargs.get("dropout_rate", 0.0), terms=terms)].fn(q, k, v, **kwargs)


def auto_choice(q_len: int, k_len: int, dropout_rate: float = 0.0, platform: str | None = None,
                terms: Sequence[Term] = ()) -> str:
  """The core "auto" uses for these lengths and terms on `platform` (default: the target platform, see
  `zoo.sharding.target_platform`: the devices of the mesh being traced for, not the host's): the first of its
  preferences that serves the request."""
  platform = platform or sharding.target_platform()
  preferred = ("pallas",) if platform in ("tpu", "gpu") else ()
  preferred += ("xla", "chunked") if q_len * k_len <= AUTO_DENSE_MAX_ELEMENTS else ("chunked", "xla")
  return next(name for name in preferred if CORES[name].refusal(terms, None, dropout_rate) is None)


def available() -> tuple[str, ...]:
  return tuple(sorted([*CORES, "auto"]))


def core(impl: str) -> Core:
  """The declared core `impl` ("auto" is a choice among them, not a core)."""
  if impl not in CORES:
    raise ValueError(f"unknown attention core {impl!r}; valid choices: {', '.join(sorted(CORES))}")
  return CORES[impl]


def get(impl: str) -> Callable:
  """The attention function registered as `impl`; a ValueError lists the valid names otherwise."""
  if impl not in available():
    raise ValueError(f"unknown attention impl {impl!r}; valid choices: {', '.join(available())}")
  return auto_attention if impl == "auto" else CORES[impl].fn


def attend(q, k, v, *, impl: str = "xla", **kwargs):
  """`get(impl)(q, k, v, **kwargs)`, after checking that `impl` serves the request (its terms, dropout)."""
  fn = get(impl)
  if impl != "auto":
    bias, scale, dropout_rate = kwargs.get("bias", ()), kwargs.get("scale"), kwargs.get("dropout_rate", 0.0)
    reason = CORES[impl].refusal(bias, scale, dropout_rate)
    if reason is not None:
      serving = " or ".join(map(repr, cores_serving(bias, scale, dropout_rate)))
      raise ValueError(f"attention impl {impl!r} {reason}; use impl={serving}")
  return fn(q, k, v, **kwargs)
