"""Keeps an installed libtpu from starting on machines that have no TPU chip; `import zoo` applies it.

The `tpu` extra installs libtpu so that any machine can compile ahead of time for a TPU topology. With it installed,
JAX's first computation also starts the TPU runtime, which on a machine without TPU chips prints a screen of warnings,
writes `/tmp/tpu_logs` and then falls back to the CPU. So on a machine with no TPU chip and no GPU plugin, importing
zoo restricts JAX to the CPU — before JAX starts its runtimes, and without importing JAX when it is not loaded yet
(commands that only check their flags, and the TPU launcher, stay fast). Ahead-of-time TPU compilation
(`jax.experimental.topologies`) does not need the runtime and keeps working. An explicit `JAX_PLATFORMS` is left as it
is, and so is a program that has already computed with JAX before importing zoo.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pathlib
import sys

GOOGLE_PCI_VENDOR = "0x1ae0"
GPU_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm7_plugin")


def may_have_tpu_chips() -> bool:
  """False only where no TPU chip can be attached: no accelerator device node, and no Google PCI device (a TPU chip
  is one) or none that JAX counts as a TPU chip. Asking JAX (which imports it) is left to Google Cloud machines."""
  if glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"):
    return True
  vendors = {pathlib.Path(p).read_text().strip() for p in glob.glob("/sys/bus/pci/devices/*/vendor")}
  if GOOGLE_PCI_VENDOR not in vendors:
    return False
  from jax._src import hardware_utils  # noqa: PLC0415 — JAX's own TPU chip detection (PCI device ids)

  return hardware_utils.num_available_tpu_chips_and_device_id()[0] > 0


def skip_tpu_runtime_without_chips() -> None:
  if (os.environ.get("JAX_PLATFORMS") or importlib.util.find_spec("libtpu") is None
      or any(importlib.util.find_spec(name) for name in GPU_PLUGINS) or may_have_tpu_chips()):
    return
  jax = sys.modules.get("jax")
  if jax is None:
    os.environ["JAX_PLATFORMS"] = "cpu"  # JAX reads it on import; processes started from here inherit it
  elif not jax.config.jax_platforms:
    jax.config.update("jax_platforms", "cpu")  # JAX was imported first; its backends start at the first computation
