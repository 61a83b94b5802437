"""The model options the papers need, each against an independent reference: low-rank W_Q W_K (Kajitsuka & Sato),
dot-product-free attention and the p·φ(t − s) encoding (Wang & E), the causal token head, the attention temperature
and weight rules, the model without a feed-forward layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import TINY, default_or_slow, random_tokens, tiny, tiny_model
from zoo import models
from zoo.nn import CallContext

LENGTH = 12


def block_inputs(seed: int = 0):
  """Features [2, LENGTH, d_model] and their call context: positions 0..LENGTH-1."""
  x = jax.random.normal(jax.random.key(seed), (2, LENGTH, TINY["d_model"]))
  return x, CallContext(jnp.broadcast_to(jnp.arange(LENGTH), (2, LENGTH)))


def logit_matrices(attention, x) -> np.ndarray:
  """[batch, heads, L, L]: q·kᵀ per head, from the module's own projections."""
  q, k = attention.query(x), attention.key(x)
  return np.asarray(jnp.einsum("bqhd,bkhd->bhqk", q, k), np.float64)


@pytest.mark.parametrize("family", default_or_slow(["encoder", "decoder"], ("encoder",)))
@pytest.mark.parametrize("rank", [1, 3])
def test_qk_rank_bounds_the_rank_of_every_logits_matrix(family, rank):
  x, _ = block_inputs()
  low = tiny_model(family, "rope" if family == "decoder" else "none", attention=dict(qk_rank=rank, head_dim=8))
  full = tiny_model(family, "none", attention=dict(head_dim=8))
  for model, bound in ((low, rank), (full, 8)):
    logits = logit_matrices(model.backbone.blocks[0].attention, x)
    ranks = {int(np.linalg.matrix_rank(m, tol=1e-6 * np.abs(m).max())) for m in logits.reshape(-1, LENGTH, LENGTH)}
    assert ranks == {bound}, (family, rank, ranks)
  tokens = random_tokens(0, (2, LENGTH))
  assert np.isfinite(np.asarray(low(tokens))).all()


def softmax(a, axis=-1):
  a = a - a.max(axis=axis, keepdims=True)
  return np.exp(a) / np.exp(a).sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("phi", ["log", "lin"])
@pytest.mark.parametrize("impl", ["xla", "chunked", "pallas"])
def test_positional_logits_are_the_softmax_of_the_bias_alone(phi, impl):
  """Wang & E's dot-product-free attention with their R[t, s] = p·φ(t − s), causal: out = softmax(R + mask)·V·W_O,
  written out in numpy from the stored log p, W_V and W_O."""
  model = tiny_model("decoder", "memory_rpe", positional=dict(options={"phi": phi}),
                     attention=dict(logits="positional", impl=impl))
  attention = model.backbone.blocks[0].attention
  assert attention.query is None and attention.key is None  # no W_Q, W_K at all
  x, context = block_inputs(1)
  out, _ = attention(x, context)
  p = np.exp(np.asarray(model.backbone.positional.log_p[...], np.float64))  # [heads]
  t = np.arange(LENGTH)
  z = (t[:, None] - t[None, :]).astype(np.float64)  # t − s
  phi_z = -np.log(np.maximum(z, 1)) if phi == "log" else -z
  bias = np.where(z >= 0, p[:, None, None] * phi_z, -np.inf)  # [heads, L, L], causal
  probs = softmax(bias)
  wv = np.asarray(attention.value.kernel[...], np.float64)  # [d_model, heads, head_dim]
  wo = np.asarray(attention.out.kernel[...], np.float64)  # [heads, head_dim, d_model]
  v = np.einsum("bld,dhe->blhe", np.asarray(x, np.float64), wv)
  want = np.einsum("hqk,bkhe,hef->bqf", probs, v, wo)
  np.testing.assert_allclose(np.asarray(out), want, rtol=2e-5, atol=2e-5)


def test_causal_token_head_reads_no_future_input():
  """Changing input t changes the regression outputs at t and after, never before (the paper's causal model)."""
  model = tiny_model("encoder", "memory_rpe", head="token", num_classes=1, causal=True,
                     attention=dict(logits="positional"))
  tokens = random_tokens(0, (1, LENGTH))
  base = np.asarray(model(tokens))  # [1, L, 1]
  assert base.shape == (1, LENGTH, 1)
  for t in (0, 5, LENGTH - 1):
    changed = np.asarray(model(tokens.at[0, t].set((tokens[0, t] + 1) % TINY["vocab_size"])))
    np.testing.assert_array_equal(changed[0, :t], base[0, :t])
    assert np.abs(changed[0, t:] - base[0, t:]).min() > 0, t
  bidirectional = tiny_model("encoder", "memory_rpe", head="token", num_classes=1)
  changed = bidirectional(tokens.at[0, 5].set((tokens[0, 5] + 1) % TINY["vocab_size"]))
  assert np.abs(np.asarray(changed)[0, :5] - np.asarray(bidirectional(tokens))[0, :5]).min() > 0


@pytest.mark.parametrize("option", [dict(temperature=1e-4), dict(weights="hardmax")])
def test_low_temperature_and_hardmax_weights_are_hardmax_attention(option):
  """At temperature 1e-4, and exactly with weights="hardmax", each query takes the value of its highest-scoring key
  (logits q·kᵀ/√d, no bias)."""
  model = tiny_model("encoder", "none", head="token", attention=option)
  attention = model.backbone.blocks[0].attention
  x, context = block_inputs(2)
  out, _ = attention(x, context)
  logits = logit_matrices(attention, x)  # [batch, heads, L, L]
  one_hot = (logits == logits.max(-1, keepdims=True)).astype(np.float64)
  v = np.einsum("bld,dhe->blhe", np.asarray(x, np.float64), np.asarray(attention.value.kernel[...], np.float64))
  want = np.einsum("bhqk,bkhe,hef->bqf", one_hot, v, np.asarray(attention.out.kernel[...], np.float64))
  np.testing.assert_allclose(np.asarray(out), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("config,message", [
    (dict(attention=dict(qk_rank=0)), r"model.attention: qk_rank must be None \(full rank\) or >= 1, got 0"),
    (dict(attention=dict(qk_rank=9)), r"model: attention.qk_rank must be None \(full rank\) or in 1..head_dim "
                                      r"\(8\), got 9"),
    (dict(attention=dict(logits="dot")), r"'dot' is not a valid choice; valid choices: 'content' \| 'positional'"),
    (dict(attention=dict(logits="positional"), positional=dict(name="rope")),
     r"attention.logits='positional' needs an encoding with a logit_bias hook and no transform_qk \(got "
     r"positional.name='rope'\); valid choices: alibi, cope, fire, fox, kerple_log"),
    (dict(attention=dict(logits="positional", qk_rank=1), positional=dict(name="alibi")),
     r"qk_rank needs logits='content'"),
    (dict(attention=dict(temperature=0.0)), r"model.attention: temperature must be > 0, got 0.0"),
    (dict(attention=dict(weights="sparsemax")), r"'sparsemax' is not a valid choice; valid choices: 'softmax' \| "
                                                r"'hardmax' \| 'uniform' \| 'none'"),
    (dict(mlp=dict(dim=-1)), r"model.mlp: dim must be None \(derived\), 0 \(no feed-forward layer\) or >= 1, got -1"),
    (dict(attention=dict(weights="uniform", impl="chunked")),
     r"^model.attention: weights='uniform' needs impl 'xla'; impl='chunked' computes softmax weights only$"),
    (dict(positional=dict(name="memory_rpe", options={"phi": "exp"})),
     r"'exp' is not a valid choice; valid choices: 'log' \| 'lin'"),
    (dict(positional=dict(name="memory_rpe", options={"p_min": 0.0})), r"memory_rpe': need 0 < p_min <= p_max"),
    (dict(causal=True, head="sequence"), r"causal=True needs head='token'"),
])
def test_bad_option_values_name_the_valid_ones(config, message):
  with pytest.raises(ValueError, match=message):
    models.build("encoder", tiny(**config))


@pytest.mark.parametrize("norm", ["layernorm", "none"])
def test_mlp_dim_zero_is_a_block_without_feed_forward_layer(norm):
  """mlp.dim = 0: no MLP and no MLP norm in the parameters; the pre-LN block is x + attention(norm(x)), written out
  in numpy from the stored parameters (softmax(q·kᵀ/√d)·V·W_O, no encoding); norm.kind="none" is the identity."""
  model = tiny_model("encoder", "none", mlp=dict(dim=0), attention=dict(head_dim=8), norm=dict(kind=norm))
  block = model.backbone.blocks[0]
  assert block.mlp is None and block.mlp_norm is None
  assert not [path for path, _ in nnx.iter_graph(model) if "mlp" in map(str, path)]
  norm_parameters = [path for path, node in nnx.iter_graph(model)
                     if isinstance(node, nnx.Param) and any("norm" in str(part) for part in path)]
  assert bool(norm_parameters) == (norm == "layernorm")
  x, context = block_inputs(3)
  out, _ = block(x, context)
  a = block.attention
  h = x64 = np.asarray(x, np.float64)
  if norm == "layernorm":
    centred = x64 - x64.mean(-1, keepdims=True)
    h = centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + 1e-6) * np.asarray(
        block.attention_norm.scale[...]) + np.asarray(block.attention_norm.bias[...])
  q, k, v = (np.einsum("bld,dhe->blhe", h, np.asarray(layer.kernel[...], np.float64))
             for layer in (a.query, a.key, a.value))
  probs = softmax(np.einsum("bqhe,bkhe->bhqk", q, k) / np.sqrt(8))
  want = x64 + np.einsum("bhqk,bkhe,hef->bqf", probs, v, np.asarray(a.out.kernel[...], np.float64))
  np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-5)
  scanned = tiny_model("encoder", "none", mlp=dict(dim=0), attention=dict(head_dim=8), norm=dict(kind=norm),
                       scan_layers=True)
  np.testing.assert_allclose(np.asarray(scanned(random_tokens(0, (2, LENGTH)))),
                             np.asarray(model(random_tokens(0, (2, LENGTH)))), rtol=1e-5, atol=1e-5)
