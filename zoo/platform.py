"""Keeps an installed libtpu from probing for TPU chips on machines that have none.

The `tpu` extra installs libtpu so that any machine can compile ahead of time for a TPU topology. With it
installed, JAX's start-up also tries to open a TPU runtime and, on a machine without TPU chips, prints a screen of
warnings before falling back to the CPU. Entry points call `skip_tpu_runtime_without_chips()` before the first JAX
computation: on a machine with no TPU chip (and no other accelerator plugin) it restricts JAX to the CPU.
Ahead-of-time TPU compilation (`jax.experimental.topologies`) does not need the runtime and keeps working.
"""

from __future__ import annotations

import importlib.util
import os

import jax


def skip_tpu_runtime_without_chips() -> None:
  if os.environ.get("JAX_PLATFORMS") or importlib.util.find_spec("libtpu") is None:
    return
  from jax._src import hardware_utils  # JAX's own TPU chip detection (PCI vendor ids)

  chips, _ = hardware_utils.num_available_tpu_chips_and_device_id()
  gpu_plugin = any(importlib.util.find_spec(name) for name in ("jax_cuda12_plugin", "jax_cuda13_plugin",
                                                                "jax_rocm7_plugin"))
  if chips == 0 and not gpu_plugin:
    jax.config.update("jax_platforms", "cpu")
