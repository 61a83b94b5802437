"""zoo: a JAX/Flax model zoo for research on how positional information enters a Transformer."""

from zoo.platform import skip_tpu_runtime_without_chips

__version__ = "0.1.0"

# Before any zoo module imports JAX: on a machine without TPU chips an installed libtpu must not start (zoo.platform).
skip_tpu_runtime_without_chips()
