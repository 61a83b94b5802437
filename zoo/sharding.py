"""Logical axis names → mesh axes, and the target a computation is being traced for.

Parameters and activations carry logical axis names (`batch`, `embed`, `heads`, `kv`, `mlp`, `vocab`, and `layers`:
the stacked axis of scanned layers, replicated by the default rules like any name they do not list); a rules table
(the config's `sharding_rules`) maps each name onto mesh axes (`data`, `fsdp`, `tensor`) — MaxText's pattern: the
model never names a mesh axis.

Code that must know the devices it is compiled for — the Pallas kernels (Mosaic, Triton or the interpreter; a
Mosaic kernel must be called inside `shard_map` on a multi-chip mesh) and `attention_impl="auto"` — reads them
from `use(mesh, rules)`, under which the training code traces its steps, never from the host's default backend:
a CPU host compiling ahead of time for a TPU topology then traces exactly the program a TPU host runs. Outside
`use` the target is the default backend's single device.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence

import jax
from jax.sharding import Mesh, PartitionSpec

Rules = tuple[tuple[str, tuple[str, ...]], ...]

_RULES: contextvars.ContextVar[Rules | None] = contextvars.ContextVar("zoo_sharding_rules", default=None)


def logical_to_mesh(logical: Sequence[str | None], rules: Rules) -> PartitionSpec:
  """The PartitionSpec for an array whose dimensions have the logical names `logical`.

  A mesh axis shards at most one dimension: a rule whose mesh axes are already used by an earlier dimension
  leaves its dimension replicated.
  """
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for name in logical:
    axes = tuple(a for a in table.get(name, ()) if a not in used) if name else ()
    used.update(axes)
    spec.append(axes[0] if len(axes) == 1 else (axes or None))
  return PartitionSpec(*spec)


@contextlib.contextmanager
def use(mesh: Mesh, rules: Rules) -> Iterator[None]:
  """Trace (call or `.lower()` a jitted function) for `mesh`'s devices with `rules` for the activations.

  `jax.set_mesh` can only be entered outside `jax.jit`, so callers wrap the call of the jitted function."""
  token = _RULES.set(tuple(rules))
  try:
    with jax.set_mesh(mesh):
      yield
  finally:
    _RULES.reset(token)


def target_platform() -> str:
  """"tpu", "gpu" or "cpu": the platform of the mesh being traced for (see `use`), else JAX's default backend."""
  mesh = jax.sharding.get_abstract_mesh()
  device = None if mesh.empty else mesh.abstract_device
  return jax.default_backend() if device is None else device.platform


def activation_spec(dims: Sequence[tuple[str | None, int]]) -> PartitionSpec | None:
  """The PartitionSpec of an activation under the current `use` context, or None outside one (or on one device).

  dims: (logical name, size) per dimension. A dimension whose size its mesh axes do not divide (a batch of 1 in
  cached decoding, 2 heads on 4 tensor devices) keeps the longest prefix of those axes that divides it, down to
  replicated — any spec is correct inside `shard_map`, the rules only make it cheap. Without rules the batch
  dimension is split over every mesh axis (data parallelism), the rest replicated.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1:
    return None
  rules = _RULES.get()
  if rules is None:
    rules = (("batch", tuple(mesh.axis_names)),)
  spec = logical_to_mesh([name for name, _ in dims], rules)
  sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))

  def divisible_prefix(axes, size: int):
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    while axes and size % math.prod(sizes[a] for a in axes):
      axes = axes[:-1]
    return axes[0] if len(axes) == 1 else (axes or None)

  return PartitionSpec(*(divisible_prefix(axes, size) for axes, (_, size) in zip(spec, dims)))
