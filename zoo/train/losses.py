"""Losses and metrics of the task objectives, as weighted *sums* (so micro-batches and devices add up exactly).

Every function returns a dict of sums; `finalize` divides by the weight sum. Summing first and dividing once makes
gradient accumulation and any batch split give the same mean as one big batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

Sums = dict[str, jax.Array]


def token_cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> Sums:
  """logits [..., classes] float32, targets [...] int, weights [...] float (0 = not scored)."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  return {"loss": jnp.sum(losses * weights), "accuracy": jnp.sum(correct * weights), "weight": jnp.sum(weights)}


def regression(predictions: jax.Array, targets: jax.Array, weights: jax.Array) -> Sums:
  """Mean-squared error as the loss, mean absolute error as the metric; predictions and targets [batch]."""
  error = predictions.astype(jnp.float32) - targets.astype(jnp.float32)
  return {"loss": jnp.sum(jnp.square(error) * weights), "mae": jnp.sum(jnp.abs(error) * weights),
          "weight": jnp.sum(weights)}


def objective_sums(objective: str, outputs: jax.Array, batch: dict[str, jax.Array]) -> Sums:
  """The summed loss and metrics of `objective` for model `outputs` on `batch` (weights default to 1)."""
  weights = batch.get("weights")
  if weights is None:
    weights = jnp.ones(batch["targets"].shape, jnp.float32)
  if objective == "regression":
    return regression(outputs.reshape(batch["targets"].shape), batch["targets"], weights)
  # token_classification, next_token (targets already shifted by the pipeline), sequence_classification
  return token_cross_entropy(outputs, batch["targets"], weights)


def finalize(sums: Sums) -> dict[str, jax.Array]:
  """Means from sums: every entry but `weight` divided by the total weight."""
  total = jnp.maximum(sums["weight"], 1e-9)
  return {name: value / total for name, value in sums.items() if name != "weight"}
