"""Token embeddings, shared by the input and (tied) output of every sequence family."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class TokenEmbedding(nnx.Module):
  """Rows initialised N(0, 1/d_model) and scaled by √d_model on input (Vaswani et al.; Gemma), so input features
  have unit scale while tied output logits `attend(h) = h · Eᵀ` start at O(1). `scale=False` reads the rows as they
  are, as pretrained GPT-2 / LLaMA / BERT / T5 tables expect."""

  def __init__(self, vocab_size: int, d_model: int, *, dtype, rngs: nnx.Rngs, scale: bool = True):
    init = nnx.with_partitioning(nnx.initializers.normal(d_model ** -0.5), ("vocab", "embed"))
    self.table = nnx.Embed(vocab_size, d_model, embedding_init=init, dtype=dtype, rngs=rngs)
    self.scale = d_model ** 0.5 if scale else 1.0

  def __call__(self, tokens: jax.Array) -> jax.Array:  # [...] int -> [..., d_model]
    return self.table(tokens) * jnp.asarray(self.scale, self.table.dtype or jnp.float32)

  def attend(self, x: jax.Array) -> jax.Array:  # [..., d_model] -> [..., vocab] logits
    return self.table.attend(x)
