"""Layers as one scanned module (`model.scan_layers`), rematerialisation (`model.remat`), and checkpoint layouts.

Unscanned, a model's N blocks are N modules and the step's program holds N copies of the block: compile time grows
with depth. Scanned, the blocks are one `Block` whose per-layer variables (parameters, dropout and random-feature
streams, per-layer encoding tables) are stacked along a leading "layers" axis, and `jax.lax.scan` runs it N times:
the program holds one block whatever the depth. An encoding shared across layers (`share_across_layers`) stays one
unstacked module: its parameters are closed over by every iteration and its random streams (SPE noise) are carried
from layer to layer, so a scanned model draws exactly what the unscanned one draws. Both layouts built from one
seed hold the same numbers; `stack_layers` / `unstack_layers` convert parameter dicts between them (a checkpoint of
one layout loads into a model of the other).

`remat` wraps each block in `jax.checkpoint`: "dots_saveable" keeps the matmul outputs and recomputes the rest in
the backward pass, "full" keeps only the block's inputs. Neither changes a number, only memory and time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from zoo import decay

REMAT_POLICIES = {"none": None, "dots_saveable": jax.checkpoint_policies.dots_saveable,
                  "full": jax.checkpoint_policies.nothing_saveable}
LAYERS_AXIS = "layers"  # the logical name of the stacked axis (replicated by the default sharding rules)


def _shared_encoding(path, _) -> bool:
  """Filter: the variables of a block's attention encoding (when it is shared, they live outside the stack)."""
  return tuple(path[:2]) == ("attention", "encoding")


def stack_blocks(blocks: Sequence[nnx.Module], *, shared_encoding: bool) -> nnx.Module:
  """The first block with every per-layer variable replaced by the stack of all blocks' values [layers, ...] and
  "layers" prepended to its logical axes. With `shared_encoding`, the encoding (one module referenced by every
  block) is left as it is."""
  per_layer = nnx.Not(_shared_encoding) if shared_encoding else ...
  states = [nnx.state(block, per_layer) for block in blocks]
  stacked = jax.tree.map(lambda *values: jnp.stack(values), *states)
  template = blocks[0]
  nnx.update(template, stacked)
  for path, node in nnx.iter_graph(template):
    if not isinstance(node, nnx.Variable) or (shared_encoding and _shared_encoding(path, node)):
      continue
    axes = node.get_metadata().get("out_sharding")
    if axes is not None:
      node.set_metadata(out_sharding=(LAYERS_AXIS, *axes))
    if isinstance(node, nnx.Param) and decay.KEY not in node.get_metadata():  # stacked, a norm scale is 2-d:
      node.set_metadata(**{decay.KEY: node.ndim - 1 >= 2})  # declare the per-layer default (vectors do not decay)
  return template


def _filters(shared_encoding: bool) -> tuple:
  """How a stacked block splits: (shared encoding parameters, shared encoding rest, per-layer parameters, rest)."""
  shared = _shared_encoding if shared_encoding else nnx.Nothing
  return nnx.All(shared, nnx.Param), shared, nnx.Param, ...


def layer(stack: nnx.Module, index: int, *, shared_encoding: bool) -> nnx.Module:
  """Layer `index` of a stacked block as an ordinary block (a copy: for reading, e.g. to build a cache)."""
  graphdef, shared_params, shared_rest, params, rest = nnx.split(stack, *_filters(shared_encoding))
  params, rest = jax.tree.map(lambda a: a[index], (params, rest))
  return nnx.merge(graphdef, shared_params, shared_rest, params, rest)


def _apply_one(graphdef, filters, remat: str, prevent_cse: bool, context):
  """(apply, mutated): a pure function (states of one block, x, cache) -> (x, cache, new shared-encoding state, new
  per-layer state), wrapped in `jax.checkpoint` with the `remat` policy unless it is "none"; `mutated[0]` turns True
  when tracing it found a random stream drawn (dropout, noise). Only then do callers write the state back: in
  evaluation nothing changes, and a module may then be read inside a transform it was not created in (decoding
  steps under `lax.scan`)."""
  mutated = [False]

  def apply(shared_params, shared_rest, params, rest, x, cache):
    block = nnx.merge(graphdef, shared_params, shared_rest, params, rest)
    x, cache = block(x, context, cache=cache)
    _, _, new_shared_rest, _, new_rest = nnx.split(block, *filters)
    before, after = jax.tree.leaves((shared_rest, rest)), jax.tree.leaves((new_shared_rest, new_rest))
    mutated[0] |= any(a is not b for a, b in zip(before, after))
    return x, cache, new_shared_rest, new_rest

  if remat != "none":
    apply = jax.checkpoint(apply, policy=REMAT_POLICIES[remat], prevent_cse=prevent_cse)
  return apply, mutated


def run_stacked(stack: nnx.Module, x: jax.Array, context, caches: Any, *, shared_encoding: bool,
                remat: str) -> tuple[jax.Array, Any]:
  """x [batch, length, d_model] through every layer of a stacked block by `jax.lax.scan`; `caches` is None or the
  layers' decoding caches stacked [layers, ...] (returned updated)."""
  filters = _filters(shared_encoding)
  graphdef, shared_params, shared_rest, params, rest = nnx.split(stack, *filters)
  apply, mutated = _apply_one(graphdef, filters, remat, False, context)

  def body(carry, layer_inputs):  # carry: the activations and the shared encoding's streams
    x, shared_rest = carry
    params, rest, cache = layer_inputs
    x, cache, shared_rest, rest = apply(shared_params, shared_rest, params, rest, x, cache)
    return (x, shared_rest), (rest, cache)

  (x, shared_rest), (rest, caches) = jax.lax.scan(body, (x, shared_rest), (params, rest, caches))
  if mutated[0]:
    nnx.update(stack, shared_rest, rest)
  return x, caches


def run_block(block: nnx.Module, x: jax.Array, context, cache: Any, *, remat: str) -> tuple[jax.Array, Any]:
  """One unstacked block, rematerialised with the `remat` policy ("none": called as it is)."""
  if remat == "none":
    return block(x, context, cache=cache)
  filters = _filters(False)
  graphdef, shared_params, shared_rest, params, rest = nnx.split(block, *filters)
  apply, mutated = _apply_one(graphdef, filters, remat, True, context)
  x, cache, _, rest = apply(shared_params, shared_rest, params, rest, x, cache)
  if mutated[0]:
    nnx.update(block, rest)
  return x, cache


# Checkpoint layouts. Unscanned paths name a layer ("backbone/blocks/3/mlp/wi/kernel"), scanned ones do not and
# hold the stack ("backbone/blocks/mlp/wi/kernel" [layers, ...]); a shared encoding's tables sit at layer 0's path
# unscanned and unstacked at the stack's path scanned.
_UNSCANNED = re.compile(r"^(.*\bblocks)/(\d+)/(.+)$")
_SCANNED = re.compile(r"^(.*\bblocks)/(\D.*)$")


def stack_layers(params: Mapping[str, Any], shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
  """Unscanned `params` {path: array} in the scanned layout whose {path: shape} is `shapes` (a target model's)."""
  layers: dict[str, dict[int, Any]] = {}
  out = {}
  for path, value in params.items():
    found = _UNSCANNED.match(path)
    if found is None:
      out[path] = value
    else:
      layers.setdefault(f"{found[1]}/{found[3]}", {})[int(found[2])] = value
  for path, values in layers.items():
    first = values[0]
    if path in shapes and len(shapes[path]) == jnp.ndim(first):  # a shared encoding's table: one copy
      out[path] = first
    else:
      out[path] = jnp.stack([values[i] for i in range(len(values))])
  return out


def unstack_layers(params: Mapping[str, Any], shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
  """Scanned `params` {path: array} in the unscanned layout whose {path: shape} is `shapes` (a target model's)."""
  out = {}
  for path, value in params.items():
    found = _SCANNED.match(path)
    if found is None:
      out[path] = value
      continue
    for target, shape in shapes.items():
      wanted = _UNSCANNED.match(target)
      if wanted is not None and (wanted[1], wanted[3]) == (found[1], found[2]):
        out[target] = value if len(shape) == jnp.ndim(value) else value[int(wanted[2])]
  return out


def match_layout(params: Mapping[str, Any], shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
  """`params` converted to the layer layout (scanned or not) of the model whose {path: shape} is `shapes`; as
  they are when the layouts already agree."""
  scanned = lambda paths: any(_SCANNED.match(p) for p in paths)
  unscanned = lambda paths: any(_UNSCANNED.match(p) for p in paths)
  if unscanned(params) and scanned(shapes):
    return stack_layers(params, shapes)
  if scanned(params) and unscanned(shapes):
    return unstack_layers(params, shapes)
  return dict(params)
