"""Fit check at pod scale without a pod: compile the real train step for a TPU topology on this machine.

With libtpu installed (the `tpu` extra), `jax.experimental.topologies` describes a TPU slice's devices on any host.
The check builds the config's mesh over those devices, lowers the same jitted train step the loop runs — with the
config's shardings, on abstract arguments, nothing allocated — compiles it with the TPU compiler, and reads the
per-device memory from `memory_analysis()` (MaxText's `train_compile` idea). The step is traced for the topology's
devices (`zoo.sharding.use`), so `attention_impl="auto"` and the Pallas kernels resolve as on a TPU host: the
compiled program holds the Mosaic kernels a TPU run executes, each inside `shard_map`; the report counts them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from zoo.attention import auto_choice
from zoo.config import check
from zoo.train.mesh import batch_sharding, make_mesh
from zoo.train.options import parse_experiment
from zoo.train.step import compile_steps, experiment_program

GIB = 2 ** 30
# High-bandwidth memory per chip, by JAX's device_kind.
HBM_PER_CHIP = {"TPU v4": 32 * GIB, "TPU v5 lite": 16 * GIB, "TPU v5": 95 * GIB, "TPU v6 lite": 32 * GIB}


@dataclasses.dataclass(frozen=True)
class FitReport:
  topology: str  # of one slice
  slices: int
  device_kind: str
  num_devices: int
  mesh_shape: dict[str, int]
  argument_bytes: int  # per device: state + batch
  output_bytes: int
  alias_bytes: int  # outputs written in place of donated arguments
  temp_bytes: int  # activations and scratch
  hbm_bytes: int | None  # per device; None for an unknown chip
  attention_impl: str  # the configured impl, with "auto" resolved for the topology's platform
  mosaic_kernels: int | None  # Mosaic (Pallas TPU) custom calls in the compiled program (None: not printable)

  @property
  def peak_bytes(self) -> int:
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes

  @property
  def fits(self) -> bool | None:
    return None if self.hbm_bytes is None else self.peak_bytes <= self.hbm_bytes


def topology_devices(topology: str, num_slices: int = 1):
  """The devices of `num_slices` slices of a TPU topology such as "v5e:2x2" (needs libtpu; each device carries its
  `slice_index`, so a multi-slice mesh lays out as on a real multi-slice job)."""
  from jax.experimental import topologies  # noqa: PLC0415

  # Compiling needs no TPU, so no exclusive hold on one: skip libtpu's one-process-per-host lockfile, which would
  # otherwise make concurrent fit checks (or one beside a TPU job) fail.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  try:
    return topologies.get_topology_desc(platform="tpu", topology_name=topology, num_slices=num_slices).devices
  except Exception as e:  # noqa: BLE001 — libtpu missing or an unknown topology name: say which
    raise ValueError(f"aot_topology {topology!r}: cannot describe this TPU topology ({str(e).splitlines()[0]}); "
                     f"install the tpu extra (pip install -e '.[tpu]') and use names like v5e:2x2, v5p:2x2x1, "
                     f"v4:2x2x1, v6e:4x4") from None


def batch_spec(experiment, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes of a global batch of the experiment's task, read off one example of its pipeline's output."""
  from zoo.train.loop import open_splits  # noqa: PLC0415
  from zoo.data import make_dataset  # noqa: PLC0415

  train_source, _ = open_splits(experiment)
  example = next(iter(make_dataset(experiment.task, train_source, batch_size=1, seed=0, train=True)))
  return {name: jax.ShapeDtypeStruct((batch_size, *value.shape[1:]), value.dtype) for name, value in
          example.items()}


def mosaic_kernels(compiled) -> int | None:
  """Mosaic (Pallas TPU) custom calls in a compiled program; None when its HLO text cannot be printed (libtpu's
  v5p programs with async updates fail XLA's printer with a RET_CHECK — the program itself compiled)."""
  try:
    return compiled.as_text().count("tpu_custom_call")
  except jax.errors.JaxRuntimeError:
    return None


def fit_check(config: Mapping[str, Any], topology: str) -> FitReport:
  experiment = parse_experiment(config)
  slices = experiment.mesh.slices
  devices = topology_devices(topology, slices)
  mesh = make_mesh(experiment.check_devices(len(devices)), devices, slices)
  program, _ = experiment_program(experiment, mesh)
  spec = batch_spec(experiment, experiment.train.batch_size)
  shardings = {name: batch_sharding(mesh, experiment.rules, len(s.shape)) for name, s in spec.items()}
  batch = {name: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=shardings[name]) for name, s in spec.items()}
  train_fn, _ = compile_steps(program, shardings)
  compiled = train_fn.lower(program.abstract_state, batch).compile()
  memory = compiled.memory_analysis()
  check(memory is not None, f"aot_topology {topology!r}: the compiler reported no memory analysis")
  kind = devices[0].device_kind
  attention = experiment.model.attention
  impl = attention.impl
  if impl == "auto":
    length = spec["inputs"].shape[-1]
    impl = f"{auto_choice(length, length, attention.dropout, devices[0].platform)} (auto)"
  chips = slices * math.prod(int(n) for n in topology.split(":")[1].split("x"))
  hbm = HBM_PER_CHIP.get(kind)
  return FitReport(topology=topology, slices=slices, device_kind=kind, num_devices=len(devices),
                   mesh_shape=dict(zip(mesh.axis_names, np.shape(mesh.devices))),
                   argument_bytes=memory.argument_size_in_bytes, output_bytes=memory.output_size_in_bytes,
                   alias_bytes=memory.alias_size_in_bytes, temp_bytes=memory.temp_size_in_bytes,
                   hbm_bytes=None if hbm is None else hbm * chips // len(devices), attention_impl=impl,
                   mosaic_kernels=mosaic_kernels(compiled))


def format_report(report: FitReport) -> str:
  gib = lambda b: f"{b / GIB:.3f} GiB"
  verdict = {True: "fits", False: "does NOT fit", None: "unknown chip memory"}[report.fits]
  hbm = "?" if report.hbm_bytes is None else gib(report.hbm_bytes)
  slices = f" × {report.slices} slices" if report.slices > 1 else ""
  return (f"aot {report.topology}{slices} ({report.num_devices} × {report.device_kind}, mesh {report.mesh_shape}): "
          f"per device arguments {gib(report.argument_bytes)}, outputs {gib(report.output_bytes)} "
          f"(aliased {gib(report.alias_bytes)}), temporaries {gib(report.temp_bytes)}, peak {gib(report.peak_bytes)} "
          f"of {hbm} HBM: {verdict}; attention {report.attention_impl}, "
          f"{'?' if report.mosaic_kernels is None else report.mosaic_kernels} Mosaic kernel calls")
