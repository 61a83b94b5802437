"""The per-call context: what one forward call tells every layer besides the activations.

A model family turns its inputs into one `CallContext` — the tokens' positions (and, in a graph model, their
relation), packed-sequence segment ids and key validity — and hands it down as one argument, model → Backbone → Block → SelfAttention. A layer reads the fields it needs; the
layers in between pass it on unopened, so a new per-call input is one field here, not a keyword on every hop.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import struct

from zoo.positional import Coordinates


@struct.dataclass
class CallContext:
  positions: jax.Array  # [batch, length] int
  relation: Any = None  # what relates the tokens besides their positions (a graph model's `Graph`), for the hooks
  segment_ids: jax.Array | None = None  # [batch, length] int (packed sequences)
  valid: jax.Array | None = None  # [batch, length] bool; False marks padding

  @property
  def coords(self) -> Coordinates:
    """What the positional hooks read: positions and relation."""
    return Coordinates(self.positions, self.relation)
