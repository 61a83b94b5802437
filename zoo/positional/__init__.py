"""Positional encodings: one registry shared by every model family and attention implementation.

Importing this package registers the built-in encodings. Public pure functions (`t5_bucket`, `alibi_slopes`,
`apply_rope`, `sinusoidal`) let anyone check zoo's encodings against other libraries.
"""

from zoo.positional.base import HOOKS, Coordinates, ModelDims, PositionalEncoding, attention_terms, implements
from zoo.positional.registry import available, build, get, parse_options, register

# Built-in encodings register themselves on import.
from zoo.positional.absolute import sinusoidal  # noqa: E402
from zoo.positional.alibi import alibi_slopes  # noqa: E402
from zoo.positional.relative_bias import LagIndex, t5_bucket  # noqa: E402
from zoo.positional.rope import apply_rope  # noqa: E402
from zoo.positional import urpe as _urpe  # noqa: E402,F401
from zoo.positional import fire as _fire  # noqa: E402,F401
from zoo.positional import kerple as _kerple  # noqa: E402,F401
from zoo.positional import memory_rpe as _memory_rpe  # noqa: E402,F401
from zoo.positional import sandwich as _sandwich  # noqa: E402,F401
from zoo.positional import xpos as _xpos  # noqa: E402,F401
from zoo.positional import cope as _cope  # noqa: E402,F401
from zoo.positional import fox as _fox  # noqa: E402,F401
from zoo.positional import spe as _spe  # noqa: E402,F401
from zoo.positional.graph import Graph  # noqa: E402
from zoo.positional import rwse as _rwse  # noqa: E402,F401
from zoo.positional import lappe as _lappe  # noqa: E402,F401
from zoo.positional import rrwp as _rrwp  # noqa: E402,F401

__all__ = ["HOOKS", "Coordinates", "Graph", "LagIndex", "ModelDims", "PositionalEncoding", "alibi_slopes", "apply_rope",
           "attention_terms", "available", "build", "get", "implements", "parse_options", "register", "sinusoidal",
           "t5_bucket"]
