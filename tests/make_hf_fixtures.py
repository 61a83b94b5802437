"""Writes tests/fixtures/hf/: tiny random Hugging Face models, their logits, and zoo decoders exported to HF.

  .venv/bin/pip install torch transformers   # only for this script; zoo and its tests need neither
  .venv/bin/python tests/make_hf_fixtures.py

For every supported architecture a tiny random model (`transformers` config classes, seeded) is saved with
`save_pretrained` (config.json + model.safetensors) next to `reference.npz`: the inputs (tokens, a right-padded
attention mask, token types) and the outputs transformers computes for them (decoders: LM logits; encoders: the
last hidden state, as zoo's `head="none"` returns). `export_*` are zoo decoders (options and seed in
`zoo_model.json`) written by `zoo.convert.hf.write`, with the logits transformers computes after loading them.
`export_lm_rope` is the shipped checkpoint: its 300 KB of tensors are kept only as digests (`tensors.json`, the
sha256 of each tensor's float32 bytes), which the tests compare with what zoo writes today.

  cd <repository> && PYTHONPATH=. <venv with torch + transformers>/bin/python tests/make_hf_fixtures.py
"""

import dataclasses
import hashlib
import json
import pathlib
import shutil

import numpy as np
import torch
import transformers

OUT = pathlib.Path(__file__).parent / "fixtures" / "hf"
BATCH, LENGTH, PADDED_LENGTH = 2, 8, 5  # row 1 is right-padded to 5 real tokens

LLAMA = dict(vocab_size=256, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)
PHI3 = dict(vocab_size=256, hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, pad_token_id=0, bos_token_id=1, eos_token_id=2)
BERT = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            type_vocab_size=2)
T5 = dict(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2, relative_attention_num_buckets=8,
          relative_attention_max_distance=16)

MODELS = {  # name -> (config, model class); "decoder" or "encoder" follows from the class
    "gpt2": (transformers.GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=32),
             transformers.GPT2LMHeadModel),
    "llama": (transformers.LlamaConfig(**LLAMA, rope_theta=500.0), transformers.LlamaForCausalLM),
    "mistral": (transformers.MistralConfig(**LLAMA, sliding_window=None, tie_word_embeddings=True,
                                           rope_scaling={"rope_type": "linear", "factor": 2.0}),
                transformers.MistralForCausalLM),
    "qwen2": (transformers.Qwen2Config(**LLAMA, rope_theta=1e6), transformers.Qwen2ForCausalLM),
    "bert": (transformers.BertConfig(**BERT, max_position_embeddings=32), transformers.BertModel),
    "roberta": (transformers.RobertaConfig(**BERT, max_position_embeddings=34, pad_token_id=1),
                transformers.RobertaModel),
    "t5": (transformers.T5Config(**T5, feed_forward_proj="gated-gelu"), transformers.T5EncoderModel),
    "t5_relu": (transformers.T5Config(**T5, feed_forward_proj="relu"), transformers.T5EncoderModel),
    # head_dim 16 (8 frequency pairs) and betas that put the ramp's ends at pairs 0 and 7: every pair is blended.
    "llama_yarn": (transformers.LlamaConfig(**dict(LLAMA, hidden_size=32, num_attention_heads=2, num_key_value_heads=1),
                                            rope_parameters=dict(rope_type="yarn", rope_theta=100.0, factor=4.0,
                                                                 original_max_position_embeddings=16, beta_fast=2.0,
                                                                 beta_slow=0.05)),
                   transformers.LlamaForCausalLM),
    "bloom": (transformers.BloomConfig(vocab_size=64, hidden_size=24, n_layer=2, n_head=6),  # 6 heads: see above
              transformers.BloomForCausalLM),
    # Llama 3.x scaling, original context 16 and 40-token inputs; θ = 100, head_dim 16: with high_freq_factor 2 pair 0
    # keeps its frequency (wavelength 6.3 < 8), pair 1 is blended (11.2), pairs 2-7 interpolate (> 16).
    "llama3": (transformers.LlamaConfig(**dict(LLAMA, hidden_size=32, num_attention_heads=2, num_key_value_heads=1),
                                        rope_parameters=dict(rope_type="llama3", rope_theta=100.0, factor=4.0,
                                                             low_freq_factor=1.0, high_freq_factor=2.0,
                                                             original_max_position_embeddings=16)),
               transformers.LlamaForCausalLM),
    # Dynamic NTK: Hugging Face reads the original context from max_position_embeddings (16); inputs of 40 tokens.
    "llama_dynamic": (transformers.LlamaConfig(**dict(LLAMA, hidden_size=32, num_attention_heads=2,
                                                      num_key_value_heads=1, max_position_embeddings=16),
                                               rope_parameters=dict(rope_type="dynamic", rope_theta=100.0, factor=4.0)),
                      transformers.LlamaForCausalLM),
    # Phi-3: fused qkv_proj (GQA) and gate_up_proj; half of each head rotates, untied head.
    "phi3": (transformers.Phi3Config(**PHI3, max_position_embeddings=64, tie_word_embeddings=False,
                                     rope_parameters=dict(rope_type="default", rope_theta=100.0,
                                                          partial_rotary_factor=0.5)),
             transformers.Phi3ForCausalLM),
    # LongRoPE as Phi-4-mini ships it (3/4 of each head rotates, tied embeddings), original context 16 of 64
    # (factor 4: attention factor √(1 + ln 4 / ln 16)), 40-token inputs: the long factors.
    "phi3_longrope": (transformers.Phi3Config(**PHI3, max_position_embeddings=64, original_max_position_embeddings=16,
                                              tie_word_embeddings=True, rope_parameters=dict(
                                                  rope_type="longrope", rope_theta=100.0, partial_rotary_factor=0.75,
                                                  original_max_position_embeddings=16,
                                                  short_factor=[1.0, 1.02, 1.05, 1.1, 1.2, 1.3],
                                                  long_factor=[1.0, 1.5, 2.5, 4.0, 6.0, 9.0])),
                      transformers.Phi3ForCausalLM),
    # Sliding windows of 8 on 24-token inputs: Mistral's (every layer), Qwen2's (every layer from max_window_layers).
    "mistral_window": (transformers.MistralConfig(**LLAMA, sliding_window=8), transformers.MistralForCausalLM),
    "qwen2_window": (transformers.Qwen2Config(**LLAMA, use_sliding_window=True, sliding_window=8, max_window_layers=0),
                     transformers.Qwen2ForCausalLM),
}
# Fixtures that read past their original context or window: their input length.
LONG = {"llama3": 40, "llama_dynamic": 40, "phi3_longrope": 40, "export_phi3": 40, "mistral_window": 24,
        "qwen2_window": 24, "export_mistral_window": 24}
# Also Hugging Face's cached decoding: a prompt of this many tokens, then one token at a time. Phi-3's 10 cross its
# original context of 16 while decoding: keys 0-15 keep the short factors they were written with.
CACHED = {"llama_dynamic": 20, "phi3_longrope": 10, "mistral_window": 20}

GPT2_STYLE = dict(attention=dict(num_heads=2, qkv_bias=True, out_bias=True), norm=dict(eps=1e-5),
                  mlp=dict(dim=32, activation="gelu_tanh", bias=True), positional=dict(name="learned"))
EXPORTS = {  # zoo decoders written as Hugging Face models
    "export_gpt2": dict(vocab_size=64, num_layers=2, d_model=16, max_length=32, scale_embeddings=False,
                        tie_embeddings=True, **GPT2_STYLE),
    "export_llama": dict(vocab_size=64, num_layers=2, d_model=16, max_length=64, scale_embeddings=False,
                         tie_embeddings=False, attention=dict(num_heads=4, num_kv_heads=2),
                         mlp=dict(dim=32, activation="swiglu"), norm=dict(kind="rmsnorm"),
                         positional=dict(name="rope", options=dict(base=1000.0))),
    # zoo's defaults: scale_embeddings=True, tied (written untied, the input table × √d_model). The first has the
    # model options of configs/lm_bytes.py:rope,smoke, so a workdir trained with it exports to this architecture.
    "export_default": dict(vocab_size=256, num_layers=1, d_model=16, max_length=32, tie_embeddings=True,
                           attention=dict(num_heads=2), mlp=dict(dim=32, activation="swiglu"),
                           norm=dict(kind="rmsnorm"), positional=dict(name="rope")),
    "export_gpt2_scaled": dict(vocab_size=64, num_layers=2, d_model=16, max_length=32, tie_embeddings=True,
                               **GPT2_STYLE),
    # ALiBi as BLOOM, with zoo's default (scaled) embeddings; 6 heads: slopes past a power of two.
    "export_bloom": dict(vocab_size=64, num_layers=2, d_model=24, max_length=32, embedding_norm=True,
                         tie_embeddings=True, attention=dict(num_heads=6, qkv_bias=True, out_bias=True),
                         mlp=dict(dim=96, activation="gelu_tanh", bias=True), norm=dict(eps=1e-5),
                         positional=dict(name="alibi")),
    # LongRoPE with partial rotary, written as Phi-3 (LLaMA carries neither); 40-token inputs past the original 16.
    "export_phi3": dict(vocab_size=64, num_layers=2, d_model=32, max_length=64, scale_embeddings=False,
                        tie_embeddings=True, attention=dict(num_heads=4, num_kv_heads=2),
                        mlp=dict(dim=48, activation="swiglu"), norm=dict(kind="rmsnorm"),
                        positional=dict(name="rope", options=dict(
                            base=100.0, fraction=0.5, scaling="longrope", factor=4.0, original_length=16,
                            short_factor=[1.0, 1.1], long_factor=[2.0, 5.0]))),
    # A sliding window of 8, written as Mistral.
    "export_mistral_window": dict(vocab_size=64, num_layers=2, d_model=16, max_length=64, tie_embeddings=False,
                                  scale_embeddings=False, attention=dict(num_heads=4, num_kv_heads=2, window=8),
                                  mlp=dict(dim=32, activation="swiglu"), norm=dict(kind="rmsnorm"),
                                  positional=dict(name="rope")),
}
SHIPPED_EXPORTS = {"export_lm_rope": "lm_rope"}  # shipped checkpoints written as Hugging Face models


def inputs(vocab: int, seed: int, pad_id: int = 0, avoid: int | None = None,
           length: int = LENGTH) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, vocab, (BATCH, length))
  if avoid is not None:  # RoBERTa: real tokens must not be the pad id (it numbers positions from them)
    tokens[tokens == avoid] = avoid + 1
  mask = np.ones((BATCH, length), bool)
  mask[1, PADDED_LENGTH:] = False
  tokens[~mask] = pad_id
  return dict(tokens=tokens, mask=mask, token_types=(rng.random((BATCH, length)) < 0.5) & mask)


def outputs(model, batch: dict[str, np.ndarray]) -> np.ndarray:
  model.eval()
  kwargs = dict(input_ids=torch.tensor(batch["tokens"]), attention_mask=torch.tensor(batch["mask"]).long())
  if model.config.model_type == "bert":  # the one fixture with sentence A / B types
    kwargs["token_type_ids"] = torch.tensor(batch["token_types"]).long()
  with torch.no_grad():
    out = model(**kwargs)
  return (out.logits if hasattr(out, "logits") else out.last_hidden_state).numpy().astype(np.float32)


def cached_outputs(model, tokens: np.ndarray, prompt: int) -> np.ndarray:
  """The logits of Hugging Face's cached decoding: the first `prompt` tokens at once, then one token per step."""
  cache, pieces = transformers.DynamicCache(config=model.config), []
  with torch.no_grad():
    for start, stop in [(0, prompt)] + [(t, t + 1) for t in range(prompt, tokens.shape[1])]:
      out = model(input_ids=torch.tensor(tokens[:, start:stop]), past_key_values=cache, use_cache=True)
      cache = out.past_key_values
      pieces.append(out.logits.numpy().astype(np.float32))
  return np.concatenate(pieces, axis=1)


def save_reference(directory: pathlib.Path, batch: dict[str, np.ndarray], logits: np.ndarray, **extra) -> None:
  np.savez(directory / "reference.npz", tokens=batch["tokens"].astype(np.int32), mask=batch["mask"],
           token_types=batch["token_types"].astype(np.int32), logits=logits, **extra)


def digests(path: pathlib.Path) -> dict[str, str]:
  from safetensors import numpy as safetensors_numpy  # noqa: PLC0415

  return {name: hashlib.sha256(np.ascontiguousarray(value, np.float32).tobytes()).hexdigest()
          for name, value in sorted(safetensors_numpy.load_file(str(path)).items())}


def main():
  from flax import nnx  # noqa: PLC0415 — zoo itself, for the exports

  from zoo import models, pretrained  # noqa: PLC0415
  from zoo.convert import hf  # noqa: PLC0415
  from zoo.train import param_paths  # noqa: PLC0415

  shutil.rmtree(OUT, ignore_errors=True)
  for seed, (name, (config, cls)) in enumerate(MODELS.items()):
    torch.manual_seed(seed)
    model = cls(config)
    directory = OUT / name
    model.save_pretrained(directory, safe_serialization=True)
    pad = config.pad_token_id if config.model_type == "roberta" else 0
    batch = inputs(config.vocab_size, seed, pad_id=pad, avoid=pad if config.model_type == "roberta" else None,
                   length=LONG.get(name, LENGTH))
    extra = dict(cached_logits=cached_outputs(model, batch["tokens"][:1], CACHED[name])) if name in CACHED else {}
    save_reference(directory, batch, outputs(model, batch), **extra)
  for seed, (name, options) in enumerate(EXPORTS.items()):
    directory = OUT / name
    zoo_model = models.build("decoder", options, seed=seed)
    params = {p: np.asarray(v) for p, v in param_paths.flatten(nnx.state(zoo_model, nnx.Param)).items()}
    hf.write("decoder", options, params, directory)
    (directory / "zoo_model.json").write_text(json.dumps(dict(family="decoder", options=options, seed=seed), indent=1))
    model = transformers.AutoModelForCausalLM.from_pretrained(directory)
    batch = inputs(options["vocab_size"], 100 + seed, length=LONG.get(name, LENGTH))
    save_reference(directory, batch, outputs(model, batch))
  for seed, (name, source) in enumerate(SHIPPED_EXPORTS.items()):
    directory = OUT / name
    loaded = pretrained.load_params(source)
    options = dataclasses.asdict(pretrained.build(loaded.config, loaded.params).config)
    hf.write("decoder", options, loaded.params, directory)
    (directory / "zoo_model.json").write_text(json.dumps(dict(family="decoder", pretrained=source), indent=1))
    model = transformers.AutoModelForCausalLM.from_pretrained(directory)
    batch = inputs(options["vocab_size"], 200 + seed)
    save_reference(directory, batch, outputs(model, batch))
    (directory / "tensors.json").write_text(json.dumps(digests(directory / hf.WEIGHTS), indent=1))
    (directory / hf.WEIGHTS).unlink()
  total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
  print(f"wrote {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
  main()
