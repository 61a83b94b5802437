"""Per-architecture tables between Hugging Face checkpoints and zoo's families.

An `Architecture` says three things about one Hugging Face `model_type`: which zoo model options its config means
(`options`, refusing every field zoo cannot honour), which tensor becomes which zoo parameter (`rules`, each rule a
pair of inverse functions, so the same table imports and exports) and which tensors zoo deliberately leaves out
(`ignored`: task heads it does not carry, buffers). Adding an architecture is one entry in `ARCHITECTURES`. Needs
numpy only (no JAX), so config files can read a Hugging Face config through it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from zoo.errors import CheckpointError

Arrays = tuple[np.ndarray, ...]


class ConversionError(CheckpointError):
  """A Hugging Face checkpoint zoo cannot reproduce exactly (or a zoo model Hugging Face cannot); the message is one
  line naming the reason. A CheckpointError, so every command that loads checkpoints reports it the same way."""


@dataclasses.dataclass(frozen=True)
class Rule:
  """Hugging Face tensors `hf` ↔ zoo parameters `zoo` (paths as `zoo.train.param_paths` writes them)."""

  hf: tuple[str, ...]
  zoo: tuple[str, ...]
  to_zoo: Callable[..., Arrays]
  to_hf: Callable[..., Arrays] | None = None  # None: this architecture is import-only


def same(hf: str, zoo: str) -> Rule:
  return Rule((hf,), (zoo,), lambda a: (a,), lambda a: (a,))


def linear(hf: str, zoo: str) -> Rule:
  """torch.nn.Linear weight [out, in] ↔ kernel [in, out]."""
  return Rule((hf,), (zoo,), lambda w: (w.T,), lambda k: (k.T,))


def to_heads(hf: str, zoo: str, heads: int) -> Rule:
  """A q / k / v projection: weight [heads·head_dim, d] ↔ kernel [d, heads, head_dim]; a bias [heads·head_dim] ↔
  [heads, head_dim]."""
  if hf.endswith("bias"):
    return Rule((hf,), (zoo,), lambda b: (b.reshape(heads, -1),), lambda b: (b.reshape(-1),))
  return Rule((hf,), (zoo,), lambda w: (w.T.reshape(w.shape[1], heads, -1),), lambda k: (k.reshape(k.shape[0], -1).T,))


def from_heads(hf: str, zoo: str, heads: int) -> Rule:
  """The output projection: weight [d, heads·head_dim] ↔ kernel [heads, head_dim, d]."""
  return Rule((hf,), (zoo,), lambda w: (w.T.reshape(heads, -1, w.shape[0]),),
              lambda k: (k.reshape(-1, k.shape[-1]).T,))


def transposed(hf: str, zoo: str) -> Rule:
  """T5's relative bias [buckets, heads] ↔ zoo's table [heads, rows]."""
  return Rule((hf,), (zoo,), lambda t: (t.T,), lambda t: (t.T,))


def conv1d(hf: str, zoo: str, heads: int | None = None, *, out: bool = False) -> Rule:
  """GPT-2's Conv1D stores weight [in, out] (no transpose); `heads` splits the output (or, `out`, the input) into
  heads."""
  if heads is None:
    return same(hf, zoo)
  if out:
    return Rule((hf,), (zoo,), lambda w: (w.reshape(heads, -1, w.shape[1]),), lambda k: (k.reshape(-1, k.shape[-1]),))
  return Rule((hf,), (zoo,), lambda w: (w.reshape(w.shape[0], heads, -1),), lambda k: (k.reshape(k.shape[0], -1),))


def fused_qkv(hf: str, zoo_prefix: str, heads: int) -> Rule:
  """GPT-2's c_attn: weight [d, 3·d] (bias [3·d]) = q | k | v ↔ three [d, heads, head_dim] kernels (biases)."""
  names = tuple(f"{zoo_prefix}/{part}/{hf.rsplit('.', 1)[1].replace('weight', 'kernel')}"
                for part in ("query", "key", "value"))

  def split(w):
    return tuple(p.reshape(*p.shape[:-1], heads, -1) for p in np.split(w, 3, axis=-1))

  def join(*parts):
    return (np.concatenate([p.reshape(*p.shape[:-2], -1) for p in parts], axis=-1),)

  return Rule((hf,), names, split, join)


def row_stacked(hf: str, zoo: tuple[str, ...], shares: tuple[int, ...], *, heads: bool = False) -> Rule:
  """torch Linears stacked by rows in one weight (Phi-3's qkv_proj: q | k | v, its gate_up_proj: gate | up):
  weight [Σ rows, d] ↔ one kernel per part. `shares`: each part's rows in equal units (q | k | v: the head counts;
  gate | up: 1, 1); with `heads`, a part's kernel is [d, share, head_dim], else [d, rows]."""

  def split(w):
    unit = w.shape[0] // sum(shares)
    parts = np.split(w, np.cumsum([share * unit for share in shares])[:-1], axis=0)
    return tuple(p.T.reshape(p.shape[1], share, -1) if heads else p.T for p, share in zip(parts, shares))

  def join(*kernels):
    return (np.concatenate([k.reshape(k.shape[0], -1).T for k in kernels], axis=0),)

  return Rule((hf,), zoo, split, join)


def require(config: Mapping[str, Any], field: str, allowed, default=None) -> Any:
  """The config's `field`, or a ConversionError naming it when its value is not one of `allowed`."""
  value = config.get(field, default)
  if value not in allowed:
    raise ConversionError(f"{config.get('model_type')}: {field}={value!r} is not supported (supported: "
                          f"{', '.join(map(repr, allowed))})")
  return value


def activation(config: Mapping[str, Any], field: str, table: Mapping[str, str]) -> str:
  return table[require(config, field, tuple(table))]


GELU_NAMES = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


def layers(config: Mapping[str, Any], per_layer: Callable[[int], list[Rule]], key: str) -> list[Rule]:
  return [rule for i in range(config[key]) for rule in per_layer(i)]


def block(i: int) -> str:
  return f"backbone/blocks/{i}"


# --- GPT-2 ---------------------------------------------------------------------------------------------------------

def gpt2_options(c: Mapping[str, Any]) -> dict[str, Any]:
  require(c, "add_cross_attention", (False,), False)
  require(c, "scale_attn_by_inverse_layer_idx", (False,), False)
  return dict(vocab_size=c["vocab_size"], num_layers=c["n_layer"], d_model=c["n_embd"], max_length=c["n_positions"],
              attention=dict(num_heads=c["n_head"], qkv_bias=True, out_bias=True,
                             scale_logits=require(c, "scale_attn_weights", (True, False), True)),
              mlp=dict(dim=c.get("n_inner") or 4 * c["n_embd"], bias=True,
                       activation=activation(c, "activation_function", GELU_NAMES)),
              norm=dict(kind="layernorm", position="pre", eps=c.get("layer_norm_epsilon", 1e-5)),
              positional=dict(name="learned"), scale_embeddings=False,
              tie_embeddings=c.get("tie_word_embeddings", True))


def gpt2_rules(c: Mapping[str, Any], o: Mapping[str, Any]) -> list[Rule]:
  h = o["attention"]["num_heads"]

  def per_layer(i):
    b, p = block(i), f"h.{i}"
    rules = [fused_qkv(f"{p}.attn.c_attn.{w}", f"{b}/attention", h) for w in ("weight", "bias")]
    rules += [conv1d(f"{p}.attn.c_proj.weight", f"{b}/attention/out/kernel", h, out=True),
              same(f"{p}.attn.c_proj.bias", f"{b}/attention/out/bias")]
    rules += [conv1d(f"{p}.mlp.{hf}.{w}", f"{b}/mlp/{zoo}/{'kernel' if w == 'weight' else 'bias'}")
              for hf, zoo in (("c_fc", "wi"), ("c_proj", "wo")) for w in ("weight", "bias")]
    rules += [same(f"{p}.{hf}.{w}", f"{b}/{zoo}/{'scale' if w == 'weight' else 'bias'}")
              for hf, zoo in (("ln_1", "attention_norm"), ("ln_2", "mlp_norm")) for w in ("weight", "bias")]
    return rules

  rules = [same("wte.weight", "embed/table/embedding"), same("wpe.weight", f"{block(0)}/attention/encoding/table"),
           same("ln_f.weight", "backbone/final_norm/scale"), same("ln_f.bias", "backbone/final_norm/bias")]
  if not o["tie_embeddings"]:
    rules.append(linear("lm_head.weight", "lm_head/kernel"))
  return rules + layers(c, per_layer, "n_layer")


def gpt2_config(o: Mapping[str, Any]) -> dict[str, Any]:
  return dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], vocab_size=o["vocab_size"],
              n_layer=o["num_layers"], n_embd=o["d_model"], n_head=o["attention"]["num_heads"],
              n_inner=o["mlp"]["dim"], n_positions=o["max_length"], activation_function="gelu_new",
              layer_norm_epsilon=o["norm"]["eps"], scale_attn_weights=o["attention"]["scale_logits"],
              tie_word_embeddings=o["tie_embeddings"], resid_pdrop=0.0,
              embd_pdrop=0.0, attn_pdrop=0.0)


# --- LLaMA, Mistral, Qwen2, Phi-3 ----------------------------------------------------------------------------------

def rope_options(c: Mapping[str, Any]) -> dict[str, Any]:
  """zoo's RoPE options from `rope_parameters` (transformers ≥ 5) or `rope_theta` + `rope_scaling` (older).

  Only scalings zoo computes identically are accepted: `linear` (position interpolation), `yarn` (zoo's yarn with
  the reference code's `ramp="index"`, the default attention factor 0.1 ln(factor) + 1, rounded ramp ends), `llama3`
  (Llama 3.x), `dynamic` NTK (whose original context Hugging Face reads from `max_position_embeddings`) and
  `longrope` (Phi-3: its factor, when absent, is max_position_embeddings / original_max_position_embeddings, as
  Hugging Face computes the default attention factor from it). DeepSeek's yarn `mscale` has no zoo counterpart —
  refused rather than approximated. `partial_rotary_factor` (Phi-3's in `rope_parameters` since transformers 5,
  beside it before) is zoo's `fraction`.
  """
  rope = dict(c.get("rope_parameters") or {})
  if not rope:
    rope = dict(c.get("rope_scaling") or {}, rope_theta=c.get("rope_theta", 10000.0))
  kind = rope.get("rope_type", rope.get("type", "default"))
  if c.get("model_type") == "phi3" and kind in ("su", "yarn"):  # Phi3Config's names for longrope in old checkpoints
    kind = "longrope"
  if kind not in ("default", "linear", "yarn", "llama3", "dynamic", "longrope"):
    raise ConversionError(f"{c.get('model_type')}: rope_type={kind!r} is not supported (supported: 'default', "
                          f"'linear', 'yarn', 'llama3', 'dynamic', 'longrope'); zoo's RoPE scalings match no other of "
                          f"Hugging Face's exactly")
  def field(name):
    if rope.get(name) is None:
      raise ConversionError(f"{c.get('model_type')}: rope_type={kind!r} needs {name} in rope_parameters")
    return rope[name]

  options = dict(base=float(rope.get("rope_theta", 10000.0)))
  if kind in ("linear", "dynamic"):
    options.update(scaling=kind, factor=float(field("factor")))
  if kind == "dynamic":
    options.update(original_length=c["max_position_embeddings"])
  if kind == "llama3":
    options.update(scaling="llama3", factor=float(field("factor")), low_freq_factor=float(field("low_freq_factor")),
                   high_freq_factor=float(field("high_freq_factor")),
                   original_length=field("original_max_position_embeddings"))
  if kind == "yarn":
    factor = float(rope["factor"])
    for field, honoured in (("mscale", None), ("mscale_all_dim", None), ("truncate", True),
                            ("attention_factor", 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0)):
      if rope.get(field, honoured) != honoured:
        raise ConversionError(f"{c.get('model_type')}: yarn {field}={rope[field]!r} is not supported (zoo's yarn has "
                              f"{field}={honoured!r})")
    options.update(scaling="yarn", factor=factor, ramp="index", beta_fast=float(rope.get("beta_fast") or 32),
                   beta_slow=float(rope.get("beta_slow") or 1),
                   original_length=rope.get("original_max_position_embeddings") or c["max_position_embeddings"])
  if kind == "longrope":
    rope.setdefault("original_max_position_embeddings", c.get("original_max_position_embeddings"))
    original = field("original_max_position_embeddings")
    options.update(scaling="longrope", original_length=original,
                   factor=max(float(rope.get("factor") or c["max_position_embeddings"] / original), 1.0),
                   short_factor=[float(f) for f in field("short_factor")],
                   long_factor=[float(f) for f in field("long_factor")])
    if rope.get("attention_factor") is not None:
      options["attention_factor"] = float(rope["attention_factor"])
  fraction = c.get("partial_rotary_factor", 1.0)
  if c.get("model_type") == "phi3":  # Phi3Config moves it into rope_parameters; Hugging Face's Llama ignores it there
    fraction = rope.get("partial_rotary_factor", fraction)
  rotated = int((c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]) * fraction)
  if rotated % 2:
    raise ConversionError(f"{c.get('model_type')}: partial_rotary_factor={fraction} rotates {rotated} features of a "
                          f"head, an odd number (zoo rotates pairs)")
  if kind == "longrope" and not len(options["short_factor"]) == len(options["long_factor"]) == rotated // 2:
    raise ConversionError(f"{c.get('model_type')}: longrope needs {rotated // 2} short and long factors (one per "
                          f"rotating feature pair), got {len(options['short_factor'])} and "
                          f"{len(options['long_factor'])}")
  if fraction != 1.0:
    options["fraction"] = float(fraction)
  return options


def sliding_window(c: Mapping[str, Any]) -> int | None:
  """The attention window of every layer: Mistral's and Phi-3's `sliding_window` (all layers), Qwen2's on the layers its
  `layer_types` mark "sliding_attention" (by default those from `max_window_layers` on, with `use_sliding_window`);
  None without one. zoo's layers share one attention config: a model that windows only some layers is refused."""
  kind, window = c["model_type"], c.get("sliding_window")
  if kind in ("mistral", "phi3") or window is None:
    return window
  if kind != "qwen2" or not c.get("use_sliding_window"):
    return None
  first = c.get("max_window_layers", 28)
  types = c.get("layer_types") or ["sliding_attention" if i >= first else "full_attention"
                                   for i in range(c["num_hidden_layers"])]
  sliding = sum(t == "sliding_attention" for t in types)
  if 0 < sliding < len(types):
    raise ConversionError(f"{kind}: sliding_window={window} on {sliding} of {len(types)} layers is not supported: "
                          f"zoo's layers share one attention window (supported: every layer or none)")
  return window if sliding else None


def llama_options(c: Mapping[str, Any]) -> dict[str, Any]:
  kind = c["model_type"]
  heads = c["num_attention_heads"]
  qkv_bias = c.get("attention_bias", False) or kind == "qwen2"
  return dict(vocab_size=c["vocab_size"], num_layers=c["num_hidden_layers"], d_model=c["hidden_size"],
              max_length=c["max_position_embeddings"],
              attention=dict(num_heads=heads, num_kv_heads=c.get("num_key_value_heads") or heads,
                             head_dim=c.get("head_dim") or c["hidden_size"] // heads, qkv_bias=qkv_bias,
                             out_bias=c.get("attention_bias", False), window=sliding_window(c)),
              mlp=dict(dim=c["intermediate_size"], activation=activation(c, "hidden_act", {"silu": "swiglu"}),
                       bias=c.get("mlp_bias", False)),
              norm=dict(kind="rmsnorm", position="pre", eps=c.get("rms_norm_eps", 1e-6)),
              positional=dict(name="rope", options=rope_options(c)), scale_embeddings=False,
              tie_embeddings=c.get("tie_word_embeddings", False))


def llama_rules(c: Mapping[str, Any], o: Mapping[str, Any], *, fused: bool = False) -> list[Rule]:
  """`fused`: Phi-3's layout, q | k | v in one `qkv_proj` and gate | up in one `gate_up_proj` (no biases)."""
  a = o["attention"]

  def per_layer(i):
    b, p = block(i), f"layers.{i}"
    heads = (("q", "query", a["num_heads"]), ("k", "key", a["num_kv_heads"]), ("v", "value", a["num_kv_heads"]))
    mlp = (("gate_proj", "wi_gate"), ("up_proj", "wi"))
    if fused:
      qkv = tuple(f"{b}/attention/{zoo}/kernel" for _, zoo, _ in heads)
      rules = [row_stacked(f"{p}.self_attn.qkv_proj.weight", qkv, tuple(count for _, _, count in heads), heads=True),
               row_stacked(f"{p}.mlp.gate_up_proj.weight", tuple(f"{b}/mlp/{zoo}/kernel" for _, zoo in mlp), (1, 1))]
      heads, mlp = (), ()
    else:
      rules = []
    for name, zoo, count in heads:
      rules.append(to_heads(f"{p}.self_attn.{name}_proj.weight", f"{b}/attention/{zoo}/kernel", count))
      if a["qkv_bias"]:
        rules.append(to_heads(f"{p}.self_attn.{name}_proj.bias", f"{b}/attention/{zoo}/bias", count))
    rules.append(from_heads(f"{p}.self_attn.o_proj.weight", f"{b}/attention/out/kernel", a["num_heads"]))
    if a["out_bias"]:
      rules.append(same(f"{p}.self_attn.o_proj.bias", f"{b}/attention/out/bias"))
    for hf, zoo in (*mlp, ("down_proj", "wo")):
      rules.append(linear(f"{p}.mlp.{hf}.weight", f"{b}/mlp/{zoo}/kernel"))
      if o["mlp"]["bias"]:
        rules.append(same(f"{p}.mlp.{hf}.bias", f"{b}/mlp/{zoo}/bias"))
    rules += [same(f"{p}.input_layernorm.weight", f"{b}/attention_norm/scale"),
              same(f"{p}.post_attention_layernorm.weight", f"{b}/mlp_norm/scale")]
    return rules

  rules = [same("embed_tokens.weight", "embed/table/embedding"), same("norm.weight", "backbone/final_norm/scale")]
  if not o["tie_embeddings"]:
    rules.append(linear("lm_head.weight", "lm_head/kernel"))
  return rules + layers(c, per_layer, "num_hidden_layers")


def rope_parameters(rope: Mapping[str, Any], max_length: int, kind: str = "llama") -> dict[str, Any]:
  """Hugging Face's `rope_parameters` for zoo's RoPE options: the inverse of `rope_options` (yarn excepted), for
  architecture `kind`: Hugging Face's Llama turns whole heads (it has no partial rotary), Phi3Config accepts only
  'default' and 'longrope'."""
  scaling, fraction = rope.get("scaling", "none"), rope.get("fraction", 1.0)
  dynamic_mismatch = scaling == "dynamic" and rope.get("original_length", 2048) != max_length
  scalings = ("none", "longrope") if kind == "phi3" else ("none", "linear", "llama3", "dynamic")
  if (scaling not in scalings or (fraction != 1.0 and kind != "phi3") or rope.get("interleaved", False)
      or rope.get("p", 1.0) != 1.0 or dynamic_mismatch):
    supported = ("base, fraction, scaling 'none' or 'longrope'" if kind == "phi3" else
                 "base, scaling 'none', 'linear', 'llama3', or 'dynamic' with original_length = max_length, which "
                 "Hugging Face reads as the original context")
    raise ConversionError(f"export: RoPE options {dict(rope)} have no {'Phi-3' if kind == 'phi3' else 'LLaMA'} "
                          f"equivalent (supported: {supported})")
  parameters = dict(rope_type="default" if scaling == "none" else scaling, rope_theta=rope.get("base", 10000.0))
  if scaling in ("linear", "llama3", "dynamic"):
    parameters["factor"] = rope["factor"]
  if scaling == "llama3":
    parameters.update(low_freq_factor=rope.get("low_freq_factor", 1.0), high_freq_factor=rope.get(
        "high_freq_factor", 4.0), original_max_position_embeddings=rope.get("original_length", 2048))
  if scaling == "longrope":  # the factor only where it is not the one Hugging Face derives from the two lengths
    original = rope["original_length"]
    parameters.update(short_factor=list(rope["short_factor"]), long_factor=list(rope["long_factor"]),
                      original_max_position_embeddings=original)
    if rope["factor"] != max(max_length / original, 1.0):
      parameters["factor"] = rope["factor"]
    if rope.get("attention_factor") is not None:
      parameters["attention_factor"] = rope["attention_factor"]
  if kind == "phi3":
    parameters["partial_rotary_factor"] = fraction
  return parameters


def rope_architecture(rope: Mapping[str, Any]) -> str:
  """The architecture a RoPE decoder is written as: LLaMA, or Phi-3 for what only it carries — LongRoPE (the scaling
  Phi-3's checkpoints ship) and partial rotary."""
  return "phi3" if rope.get("scaling") == "longrope" or rope.get("fraction", 1.0) != 1.0 else "llama"


def llama_config(o: Mapping[str, Any]) -> dict[str, Any]:
  a = o["attention"]
  parameters = rope_parameters(o["positional"]["options"], o["max_length"])
  if a["qkv_bias"] != a["out_bias"]:
    raise ConversionError("export: LLaMA has one attention_bias for q, k, v and the output; this model has "
                          f"attention.qkv_bias={a['qkv_bias']}, attention.out_bias={a['out_bias']}")
  config = dict(model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=o["vocab_size"],
                num_hidden_layers=o["num_layers"], hidden_size=o["d_model"], num_attention_heads=a["num_heads"],
                num_key_value_heads=a["num_kv_heads"], head_dim=a["head_dim"], intermediate_size=o["mlp"]["dim"],
                hidden_act="silu", rms_norm_eps=o["norm"]["eps"], max_position_embeddings=o["max_length"],
                rope_parameters=parameters, attention_bias=a["qkv_bias"], mlp_bias=o["mlp"]["bias"],
                tie_word_embeddings=o["tie_embeddings"], attention_dropout=0.0)
  if a["window"] is None:
    return config
  # A sliding window: Mistral, LLaMA's layout with `sliding_window` and no biases.
  if a["qkv_bias"] or o["mlp"]["bias"]:
    raise ConversionError("export: a windowed decoder is written as Mistral, which has no biases; this model has "
                          f"attention.qkv_bias={a['qkv_bias']}, mlp.bias={o['mlp']['bias']}")
  del config["attention_bias"], config["mlp_bias"]
  return dict(config, model_type="mistral", architectures=["MistralForCausalLM"], sliding_window=a["window"])


def phi3_options(c: Mapping[str, Any]) -> dict[str, Any]:
  """Phi-3 (Phi-3, Phi-3.5, Phi-4-mini) is LLaMA with fused projections (`llama_rules(fused=True)`), no biases
  (Hugging Face's Phi3 has none, whatever the config says), partial rotary and LongRoPE (`rope_options`); its
  `sliding_window` applies whenever it is set."""
  options = llama_options(c)
  options["attention"].update(qkv_bias=False, out_bias=False)
  options["mlp"]["bias"] = False
  return options


def phi3_config(o: Mapping[str, Any]) -> dict[str, Any]:
  """No token ids: Phi3Config's defaults (32000) index past a small vocabulary's embedding table."""
  a, rope = o["attention"], o["positional"]["options"]
  config = dict(model_type="phi3", architectures=["Phi3ForCausalLM"], vocab_size=o["vocab_size"],
                num_hidden_layers=o["num_layers"], hidden_size=o["d_model"], num_attention_heads=a["num_heads"],
                num_key_value_heads=a["num_kv_heads"], intermediate_size=o["mlp"]["dim"], hidden_act="silu",
                rms_norm_eps=o["norm"]["eps"], max_position_embeddings=o["max_length"],
                rope_parameters=rope_parameters(rope, o["max_length"], "phi3"), sliding_window=None,
                tie_word_embeddings=o["tie_embeddings"], attention_dropout=0.0, resid_pdrop=0.0, embd_pdrop=0.0,
                pad_token_id=None, bos_token_id=None, eos_token_id=None)
  if rope.get("scaling") == "longrope":
    config["original_max_position_embeddings"] = rope["original_length"]
  return config


# --- BLOOM (ALiBi) -------------------------------------------------------------------------------------------------

def bloom_options(c: Mapping[str, Any]) -> dict[str, Any]:
  """BLOOM adds Press's ALiBi slopes (zoo's `alibi_slopes`, also for head counts that are not powers of two) after
  the 1/√d scaling, as zoo does; its MLP is 4·d_model wide with tanh GELU, every projection has a bias and a
  LayerNorm follows the embeddings."""
  require(c, "apply_residual_connection_post_layernorm", (False,), False)
  d = c["hidden_size"]
  return dict(vocab_size=c["vocab_size"], num_layers=c["n_layer"], d_model=d, max_length=c.get("seq_length") or 2048,
              attention=dict(num_heads=c["n_head"], qkv_bias=True, out_bias=True),
              mlp=dict(dim=4 * d, activation="gelu_tanh", bias=True),
              norm=dict(kind="layernorm", position="pre", eps=c.get("layer_norm_epsilon", 1e-5)),
              positional=dict(name="alibi"), scale_embeddings=False, embedding_norm=True,
              tie_embeddings=c.get("tie_word_embeddings", True))


def bloom_rules(c: Mapping[str, Any], o: Mapping[str, Any]) -> list[Rule]:
  """query_key_value interleaves per head: rows [heads, (q | k | v), head_dim] ↔ zoo's three [d, heads, head_dim]
  kernels (biases [heads, head_dim])."""
  h = o["attention"]["num_heads"]

  def fused(hf: str, zoo_prefix: str) -> Rule:
    kind = "kernel" if hf.endswith("weight") else "bias"

    def split(w):  # weight [heads·3·head_dim, d] or bias [heads·3·head_dim]
      parts = w.reshape(h, 3, -1, *w.shape[1:])
      return tuple(np.moveaxis(parts[:, i], (0, 1), (-2, -1)) if w.ndim == 2 else parts[:, i] for i in range(3))

    def join(*parts):  # kernels [d, heads, head_dim] or biases [heads, head_dim]
      rows = [np.moveaxis(p, (-2, -1), (0, 1)) if p.ndim == 3 else p for p in parts]
      stacked = np.stack(rows, axis=1)  # [heads, 3, head_dim, (d)]
      return (stacked.reshape(-1, *stacked.shape[3:]),)

    return Rule((hf,), tuple(f"{zoo_prefix}/{part}/{kind}" for part in ("query", "key", "value")), split, join)

  def per_layer(i):
    b, p = block(i), f"h.{i}"
    rules = [fused(f"{p}.self_attention.query_key_value.{w}", f"{b}/attention") for w in ("weight", "bias")]
    rules += [from_heads(f"{p}.self_attention.dense.weight", f"{b}/attention/out/kernel", h),
              same(f"{p}.self_attention.dense.bias", f"{b}/attention/out/bias")]
    rules += [rule for hf, zoo in (("dense_h_to_4h", "wi"), ("dense_4h_to_h", "wo"))
              for rule in (linear(f"{p}.mlp.{hf}.weight", f"{b}/mlp/{zoo}/kernel"),
                           same(f"{p}.mlp.{hf}.bias", f"{b}/mlp/{zoo}/bias"))]
    rules += [same(f"{p}.{hf}.{w}", f"{b}/{zoo}/{'scale' if w == 'weight' else 'bias'}")
              for hf, zoo in (("input_layernorm", "attention_norm"), ("post_attention_layernorm", "mlp_norm"))
              for w in ("weight", "bias")]
    return rules

  rules = [same("word_embeddings.weight", "embed/table/embedding")]
  rules += [same(f"{hf}.{w}", f"backbone/{zoo}/{'scale' if w == 'weight' else 'bias'}")
            for hf, zoo in (("word_embeddings_layernorm", "embedding_norm"), ("ln_f", "final_norm"))
            for w in ("weight", "bias")]
  if not o["tie_embeddings"]:
    rules.append(linear("lm_head.weight", "lm_head/kernel"))
  return rules + layers(c, per_layer, "n_layer")


def bloom_config(o: Mapping[str, Any]) -> dict[str, Any]:
  return dict(model_type="bloom", architectures=["BloomForCausalLM"], vocab_size=o["vocab_size"],
              n_layer=o["num_layers"], hidden_size=o["d_model"], n_head=o["attention"]["num_heads"],
              layer_norm_epsilon=o["norm"]["eps"], seq_length=o["max_length"], tie_word_embeddings=o["tie_embeddings"],
              apply_residual_connection_post_layernorm=False, hidden_dropout=0.0, attention_dropout=0.0)


# --- BERT, RoBERTa -------------------------------------------------------------------------------------------------

def bert_options(c: Mapping[str, Any]) -> dict[str, Any]:
  require(c, "position_embedding_type", ("absolute",), "absolute")
  require(c, "is_decoder", (False,), False)
  offset = c.get("pad_token_id", 1) + 1 if c["model_type"] == "roberta" else 0
  return dict(vocab_size=c["vocab_size"], num_layers=c["num_hidden_layers"], d_model=c["hidden_size"],
              max_length=c["max_position_embeddings"] - offset,
              attention=dict(num_heads=c["num_attention_heads"], qkv_bias=True, out_bias=True),
              mlp=dict(dim=c["intermediate_size"], activation=activation(c, "hidden_act", GELU_NAMES), bias=True),
              norm=dict(kind="layernorm", position="post", eps=c.get("layer_norm_eps", 1e-12)),
              positional=dict(name="learned"), scale_embeddings=False, embedding_norm=True,
              type_vocab_size=c.get("type_vocab_size", 2), head="none")


def bert_rules(c: Mapping[str, Any], o: Mapping[str, Any]) -> list[Rule]:
  """RoBERTa numbers positions from pad_token_id + 1 (rows below are never read for real tokens): zoo's table
  starts there, so zoo's positions 0, 1, … are RoBERTa's pad_token_id + 1, + 2, …"""
  offset = c["max_position_embeddings"] - o["max_length"]
  h = o["attention"]["num_heads"]

  def per_layer(i):
    b, p = block(i), f"encoder.layer.{i}"
    rules = [to_heads(f"{p}.attention.self.{zoo}.{w}", f"{b}/attention/{zoo}/{'kernel' if w == 'weight' else 'bias'}",
                      h) for zoo in ("query", "key", "value") for w in ("weight", "bias")]
    rules += [from_heads(f"{p}.attention.output.dense.weight", f"{b}/attention/out/kernel", h),
              same(f"{p}.attention.output.dense.bias", f"{b}/attention/out/bias"),
              linear(f"{p}.intermediate.dense.weight", f"{b}/mlp/wi/kernel"),
              same(f"{p}.intermediate.dense.bias", f"{b}/mlp/wi/bias"),
              linear(f"{p}.output.dense.weight", f"{b}/mlp/wo/kernel"),
              same(f"{p}.output.dense.bias", f"{b}/mlp/wo/bias")]
    norms = (("attention.output", "attention_norm"), ("output", "mlp_norm"))
    rules += [same(f"{p}.{hf}.LayerNorm.{w}", f"{b}/{zoo}/{'scale' if w == 'weight' else 'bias'}")
              for hf, zoo in norms for w in ("weight", "bias")]
    return rules

  rules = [same("embeddings.word_embeddings.weight", "embed/table/embedding"),
           Rule(("embeddings.position_embeddings.weight",), (f"{block(0)}/attention/encoding/table",),
                lambda t: (t[offset:],)),
           same("embeddings.token_type_embeddings.weight", "token_types/embedding"),
           same("embeddings.LayerNorm.weight", "backbone/embedding_norm/scale"),
           same("embeddings.LayerNorm.bias", "backbone/embedding_norm/bias")]
  return rules + layers(c, per_layer, "num_hidden_layers")


# --- T5 (the encoder) ----------------------------------------------------------------------------------------------

T5_FEED_FORWARD = {"relu": "relu", "gelu": "gelu", "gated-gelu": "geglu_tanh", "gated-silu": "swiglu"}


def t5_options(c: Mapping[str, Any]) -> dict[str, Any]:
  return dict(vocab_size=c["vocab_size"], num_layers=c["num_layers"], d_model=c["d_model"],
              max_length=c.get("n_positions", 512),
              attention=dict(num_heads=c["num_heads"], head_dim=c["d_kv"], scale_logits=False),
              mlp=dict(dim=c["d_ff"], activation=activation(c, "feed_forward_proj", T5_FEED_FORWARD)),
              norm=dict(kind="rmsnorm", position="pre", eps=c.get("layer_norm_epsilon", 1e-6)),
              positional=dict(name="t5_bias", options=dict(
                  num_buckets=c.get("relative_attention_num_buckets", 32),
                  max_distance=c.get("relative_attention_max_distance", 128))),
              scale_embeddings=False, head="none")


def t5_rules(c: Mapping[str, Any], o: Mapping[str, Any]) -> list[Rule]:
  h, gated = o["attention"]["num_heads"], o["mlp"]["activation"] in ("geglu_tanh", "swiglu")

  def per_layer(i):
    b, p = block(i), f"encoder.block.{i}.layer"
    rules = [to_heads(f"{p}.0.SelfAttention.{hf}.weight", f"{b}/attention/{zoo}/kernel", h)
             for hf, zoo in (("q", "query"), ("k", "key"), ("v", "value"))]
    rules += [from_heads(f"{p}.0.SelfAttention.o.weight", f"{b}/attention/out/kernel", h),
              same(f"{p}.0.layer_norm.weight", f"{b}/attention_norm/scale"),
              same(f"{p}.1.layer_norm.weight", f"{b}/mlp_norm/scale"),
              linear(f"{p}.1.DenseReluDense.wo.weight", f"{b}/mlp/wo/kernel")]
    inputs = (("wi_0", "wi_gate"), ("wi_1", "wi")) if gated else (("wi", "wi"),)
    return rules + [linear(f"{p}.1.DenseReluDense.{hf}.weight", f"{b}/mlp/{zoo}/kernel") for hf, zoo in inputs]

  return [same("shared.weight", "embed/table/embedding"),
          transposed("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                     f"{block(0)}/attention/encoding/table"),
          same("encoder.final_layer_norm.weight", "backbone/final_norm/scale")] + layers(c, per_layer, "num_layers")


@dataclasses.dataclass(frozen=True)
class Architecture:
  family: str  # the zoo family it becomes
  options: Callable[[Mapping[str, Any]], dict[str, Any]]  # HF config -> zoo model options (refusing what differs)
  rules: Callable[[Mapping[str, Any], Mapping[str, Any]], list[Rule]]  # (HF config, zoo options) -> tensor table
  prefixes: tuple[str, ...] = ()  # stripped from HF names (a task model's base-model prefix)
  ignored: tuple[str, ...] = ()  # regexes of HF tensors zoo leaves out on purpose (heads it lacks, buffers)
  aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)  # a tied tensor saved under its other name
  export: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None  # zoo options -> HF config


LLAMA = Architecture("decoder", llama_options, llama_rules, prefixes=("model.",),
                     ignored=(r".*rotary_emb\.inv_freq",), export=llama_config)
BERT = Architecture("encoder", bert_options, bert_rules, prefixes=("bert.", "roberta."),
                    ignored=(r"pooler\..*", r"cls\..*", r"lm_head\..*", r"embeddings\.position_ids",
                             r"classifier\..*"))
ARCHITECTURES: dict[str, Architecture] = {
    "gpt2": Architecture("decoder", gpt2_options, gpt2_rules, prefixes=("transformer.",),
                         ignored=(r"h\.\d+\.attn\.(bias|masked_bias)",), export=gpt2_config),
    "llama": LLAMA,
    "bloom": Architecture("decoder", bloom_options, bloom_rules, prefixes=("transformer.",), export=bloom_config),
    "mistral": LLAMA,
    "qwen2": LLAMA,
    "phi3": Architecture("decoder", phi3_options, functools.partial(llama_rules, fused=True), prefixes=("model.",),
                         ignored=(r".*rotary_emb\.inv_freq",), export=phi3_config),
    "bert": BERT,
    "roberta": BERT,
    # T5's encoder (T5EncoderModel, or the encoder half of T5ForConditionalGeneration).
    "t5": Architecture("encoder", t5_options, t5_rules,
                       ignored=(r"decoder\..*", r"lm_head\.weight", r"encoder\.embed_tokens\.weight"),
                       aliases={"encoder.embed_tokens.weight": "shared.weight"}),
}


def architecture(config: Mapping[str, Any]) -> Architecture:
  """The table of a Hugging Face config's `model_type`, or the error naming it and the supported ones."""
  kind = config.get("model_type")
  if kind not in ARCHITECTURES:
    classes = ", ".join(config.get("architectures") or [])
    raise ConversionError(f"unsupported Hugging Face architecture {kind!r} ({classes}); supported: "
                          f"{', '.join(ARCHITECTURES)}")
  return ARCHITECTURES[kind]
