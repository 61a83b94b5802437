"""zoo: a JAX/Flax model zoo for research on how positional information enters a Transformer."""

__version__ = "0.1.0"
