"""Which parameters weight decay applies to, declared by the parameters themselves (metadata `weight_decay`).

Decoupled weight decay pulls a parameter toward 0. That regularises weight matrices, but for a norm's scale, a bias
or a positional table it changes what the model computes at initialisation — URPE's C starts at 1 *because* 1 means
"plain attention", and decay would drag it toward "no attention". So each parameter may declare `weight_decay`;
without a declaration, matrices (≥ 2 dims: kernels, embeddings) decay and vectors (norm scales, biases) do not.
Every positional encoding's parameters are declared exempt when the registry builds it (`exempt`), so a new
encoding needs no line of its own.
"""

from __future__ import annotations

import jax
from flax import nnx

KEY = "weight_decay"


def exempt(module: nnx.Module) -> None:
  """Declares every parameter of `module` (recursively) exempt from weight decay."""
  for _, node in nnx.iter_graph(module):
    if isinstance(node, nnx.Param):
      node.set_metadata(**{KEY: False})


def applies(variable: nnx.Variable) -> bool:
  """The parameter's declaration, else: decay matrices, not vectors."""
  return variable.get_metadata().get(KEY, variable.ndim >= 2)


def mask(params: nnx.State) -> nnx.State:
  """The parameters' tree with True where weight decay applies (optax's `mask` argument)."""
  return jax.tree.map(lambda v: v.replace(applies(v)), params, is_leaf=lambda x: isinstance(x, nnx.Variable))
