"""Shared test helpers: tiny model configs, jitted entry points, the reference numbers of public libraries."""

import json
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

from zoo import models  # noqa: E402

FIXTURES = pathlib.Path(__file__).parent / "fixtures"

# Small enough to compile in well under a second, big enough to have several heads and layers.
TINY = dict(vocab_size=32, num_layers=2, d_model=16, num_heads=2, mlp_dim=32, max_length=48)


def per_token_options(family: str) -> dict:
  """Options that make `family` output per-token logits (the encoder's token head; the decoder always does)."""
  return dict(head="token", num_classes=5) if family == "encoder" else {}


def tiny_model(family: str, pe: str, seed: int = 0, **overrides):
  return models.build(family, dict(TINY, pe=pe, **overrides), seed=seed)


@nnx.jit
def forward(model, tokens, positions, mask):
  """model(tokens, positions=..., mask=...) compiled; positions / mask may be None."""
  return model(tokens, positions=positions, mask=mask)


@nnx.jit
def extend(model, tokens, cache):
  return model.extend(tokens, cache)


def random_tokens(seed: int, shape, vocab: int = TINY["vocab_size"]):
  return jax.random.randint(jax.random.key(seed), shape, 0, vocab)


@pytest.fixture(scope="session")
def reference_numbers():
  """Numbers from Hugging Face transformers and x-transformers (see fixtures/make_reference_fixtures.py)."""
  return json.loads((FIXTURES / "reference_numbers.json").read_text())
