"""Hugging Face checkpoints: logit parity with transformers (fixtures of tests/make_hf_fixtures.py), export →
re-import identity, one-line refusals, and the command-line journeys (convert, fine-tune with a swapped encoding)."""

import dataclasses
import hashlib
import json
import pathlib
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors import numpy as safetensors_numpy

from conftest import FIXTURES, REPO, cli_env, default_or_slow
from zoo import models, pretrained
from zoo.convert import hf
from zoo.convert.architectures import ConversionError
from zoo import decay
from zoo.train import param_paths

HF = FIXTURES / "hf"
DECODERS = ["gpt2", "llama", "mistral", "qwen2", "llama_yarn", "llama3", "llama_dynamic", "phi3", "phi3_longrope",
            "bloom"]
IMPORTS = [*DECODERS, "bert", "roberta", "t5", "t5_relu"]
LONG_CONTEXT = ["llama3", "llama_dynamic", "phi3_longrope"]  # 40-token inputs past an original context of 16: to 1e-5
# Fixtures with Hugging Face's cached decoding (the prompt length, then one token per step): RoPE that follows the
# length each call reaches (a cached key keeps the rotation of the step that wrote it), and a sliding window (a ring
# of 8 cache slots per layer).
CACHED = {"llama_dynamic": 20, "phi3_longrope": 10, "mistral_window": 20}
EXPORTS = ["export_gpt2", "export_llama", "export_default", "export_gpt2_scaled", "export_bloom", "export_phi3"]
TOLERANCE = 1e-4  # float32, as the issue asks
EXPORT_TOLERANCE = 1e-5  # transformers on a zoo export (H6)
# zoo -> HF -> zoo: the same function; a formerly tied head is now a Linear, whose matmul rounds differently (up to
# 1.1e-6 on a logit of 1.18 measured): relative and absolute float32 rounding.
ROUND_TRIP_TOLERANCE = 1e-6


def reference(name: str) -> dict[str, np.ndarray]:
  return dict(np.load(HF / name / "reference.npz"))


def outputs(model, ref: dict[str, np.ndarray], name: str) -> np.ndarray:
  """zoo's logits (decoders) or final features (encoders) for the fixture's padded batch."""
  kwargs = dict(mask=jnp.asarray(ref["mask"]))
  if name == "bert":  # the fixture with sentence A / B token types
    kwargs["token_types"] = jnp.asarray(ref["token_types"])
  return np.asarray(nnx.jit(lambda m, t: m(t, **kwargs))(model, jnp.asarray(ref["tokens"])))


def assert_parity(got: np.ndarray, ref: dict[str, np.ndarray], tolerance: float = TOLERANCE) -> None:
  mask = ref["mask"]  # padded positions are compared by nobody: their outputs are arbitrary on both sides
  np.testing.assert_allclose(got[mask], ref["logits"][mask], rtol=0, atol=tolerance)


def params_of(model) -> dict[str, np.ndarray]:
  return {p: np.asarray(v) for p, v in param_paths.flatten(nnx.state(model, nnx.Param)).items()}


@pytest.mark.parametrize("name", IMPORTS)
def test_loaded_model_equals_transformers_on_a_padded_batch(name):
  model, config = pretrained.load(str(HF / name))
  assert config.model_name == ("decoder" if name in DECODERS else "encoder")
  assert_parity(outputs(model, reference(name), name), reference(name),
                EXPORT_TOLERANCE if name in LONG_CONTEXT else TOLERANCE)


# One per position kind by default (learned, RoPE with grouped queries, ALiBi); every decoder in the slow suite.
@pytest.mark.parametrize("name", default_or_slow([n for n in DECODERS if n not in CACHED],
                                                 ("gpt2", "llama", "bloom")))
def test_cached_generation_equals_the_full_forward(name):
  model, _ = pretrained.load(str(HF / name))
  ref = reference(name)
  tokens = jnp.asarray(ref["tokens"][:, :5])  # both rows are real tokens up to 5
  extend = nnx.jit(lambda m, t, c: m.extend(t, c))
  cache = model.init_cache(2, 8)
  pieces = []
  for start, stop in ((0, 2), (2, 3), (3, 4), (4, 5)):  # a 2-token prompt, then single-token steps
    logits, cache = extend(model, tokens[:, start:stop], cache)
    pieces.append(np.asarray(logits))
  np.testing.assert_allclose(np.concatenate(pieces, axis=1), ref["logits"][:, :5], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", CACHED)
def test_cached_decoding_equals_hugging_faces(name):
  """Dynamic NTK rotates each call with the base of the length it reaches, LongRoPE with the short or long factors
  of that length: a prompt, then one token per step past the original context of 16 (Phi-3's 10-token prompt crosses
  it while decoding), equals transformers' cached decoding step for step (each key keeps the rotation of the step
  that wrote it); so does Mistral's sliding window of 8, a ring of 8 slots per layer."""
  model, _ = pretrained.load(str(HF / name))
  ref = reference(name)
  tokens = jnp.asarray(ref["tokens"][:1])
  extend = nnx.jit(lambda m, t, c: m.extend(t, c))
  cache = model.init_cache(1, tokens.shape[1])
  pieces = []
  for start, stop in [(0, CACHED[name])] + [(t, t + 1) for t in range(CACHED[name], tokens.shape[1])]:
    logits, cache = extend(model, tokens[:, start:stop], cache)
    pieces.append(np.asarray(logits))
  np.testing.assert_allclose(np.concatenate(pieces, axis=1), ref["cached_logits"], rtol=0, atol=EXPORT_TOLERANCE)


@pytest.mark.parametrize("name", [*LONG_CONTEXT, "phi3"])
def test_rope_scalings_export_and_reimport_identically(name, tmp_path):
  """Written back as the architecture it came from (Phi-3: partial rotary, LongRoPE), with the same rope_parameters."""
  family, options, params = hf.read(HF / name)
  model = pretrained.build(dict(model_name=family, model=options), params)
  model.eval()
  hf.write(family, options, params, tmp_path)
  written, original = (json.loads((d / "config.json").read_text()) for d in (tmp_path, HF / name))
  assert (written["model_type"], written["rope_parameters"]) == (original["model_type"], original["rope_parameters"])
  assert_reimport_computes_the_same(tmp_path, model, options, reference(name))


@pytest.mark.parametrize("impl", ["chunked", "pallas"])
def test_grouped_query_attention_through_other_cores_keeps_parity(impl):
  family, options, params = hf.read(HF / "llama")
  assert options["attention"]["num_kv_heads"] < options["attention"]["num_heads"]
  options = dict(options, attention={**options["attention"], "impl": impl})
  model = pretrained.build(dict(model_name=family, model=options), params)
  model.eval()
  assert_parity(outputs(model, reference("llama"), "llama"), reference("llama"))


def assert_reimport_computes_the_same(exported: pathlib.Path, model, options: dict, ref: dict[str, np.ndarray]):
  """zoo -> HF -> zoo: the parameters come back as `plain_params` made them (bit for bit; for zoo's default scaled,
  tied embeddings an untied model with the scale in its input table), and the logits as the original's."""
  family, again_options, again = hf.read(exported)
  assert family == "decoder"
  plain = hf.plain_params(options, params_of(model))
  assert again.keys() == plain.keys() and all(np.array_equal(again[k], plain[k]) for k in plain)
  again_model = pretrained.build(dict(model_name=family, model=again_options), again)
  again_model.eval()
  np.testing.assert_allclose(outputs(again_model, ref, "decoder")[ref["mask"]], outputs(model, ref, "decoder")[
      ref["mask"]], rtol=ROUND_TRIP_TOLERANCE, atol=ROUND_TRIP_TOLERANCE)


# A model built from a seed has the parameters the fixtures were made from up to an ulp or two: the tests compile at
# XLA's CPU optimisation level 0 (tests/conftest.py), the fixtures were made at the default level, and the initialisers'
# arithmetic rounds differently there (measured: ≈ 4 % of the entries differ, by at most 3.1e-7 relative). A wrong
# name, layout, transpose or scale is off by far more.
INIT_RTOL = 1e-6


def assert_initialised_like(written: dict, committed: dict) -> None:
  """The tensors of an export written from freshly built parameters equal the committed ones (names exactly)."""
  assert written.keys() == committed.keys()
  for name in written:
    np.testing.assert_allclose(written[name], committed[name], rtol=INIT_RTOL, atol=0, err_msg=name)


@pytest.mark.parametrize("name", EXPORTS)
def test_exported_decoder_equals_transformers_and_reimports_identically(name, tmp_path):
  spec = json.loads((HF / name / "zoo_model.json").read_text())
  model = models.build(spec["family"], spec["options"], seed=spec["seed"])
  model.eval()
  ref = reference(name)
  assert_parity(outputs(model, ref, name), ref, EXPORT_TOLERANCE)  # transformers ran the committed export
  hf.write(spec["family"], spec["options"], params_of(model), tmp_path)
  written, committed = (safetensors_numpy.load_file(str(d / hf.WEIGHTS)) for d in (tmp_path, HF / name))
  assert_initialised_like(written, committed)
  assert_reimport_computes_the_same(tmp_path, model, spec["options"], ref)


def test_zoo_default_embeddings_export_untied_with_the_scale_in_the_input_table():
  spec = json.loads((HF / "export_default" / "zoo_model.json").read_text())
  assert "scale_embeddings" not in spec["options"] and spec["options"]["tie_embeddings"]  # zoo's defaults
  config = json.loads((HF / "export_default" / hf.CONFIG).read_text())
  assert config["tie_word_embeddings"] is False
  table = params_of(models.build("decoder", spec["options"], seed=spec["seed"]))[hf.EMBEDDING]
  tensors = safetensors_numpy.load_file(str(HF / "export_default" / hf.WEIGHTS))
  np.testing.assert_allclose(tensors["model.embed_tokens.weight"], table * np.float32(4.0), rtol=INIT_RTOL)  # √16
  np.testing.assert_allclose(tensors["lm_head.weight"], table, rtol=INIT_RTOL)


@pytest.mark.parametrize("name", ["gpt2", "llama", "bloom", "phi3", "phi3_longrope"])
def test_import_then_export_gives_back_the_checkpoint(name, tmp_path):
  family, options, params = hf.read(HF / name)
  hf.write(family, options, params, tmp_path)
  written, original = (safetensors_numpy.load_file(str(d / hf.WEIGHTS)) for d in (tmp_path, HF / name))
  assert written.keys() == original.keys()
  assert all(np.array_equal(written[k], original[k]) for k in written)


def test_a_sharded_checkpoint_reads_like_one_file(tmp_path):
  tensors = safetensors_numpy.load_file(str(HF / "llama" / hf.WEIGHTS))
  names = sorted(tensors)
  shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
  for file, part in shards.items():
    safetensors_numpy.save_file({n: tensors[n] for n in part}, str(tmp_path / file), metadata={"format": "pt"})
  weight_map = {name: file for file, part in shards.items() for name in part}
  (tmp_path / hf.INDEX).write_text(json.dumps(dict(metadata={}, weight_map=weight_map)))
  shutil.copy(HF / "llama" / hf.CONFIG, tmp_path / hf.CONFIG)
  _, _, sharded = hf.read(tmp_path)
  _, _, single = hf.read(HF / "llama")
  assert sharded.keys() == single.keys() and all(np.array_equal(sharded[k], single[k]) for k in single)


def test_converted_biases_are_exempt_from_weight_decay():
  model, _ = pretrained.load(str(HF / "qwen2"))  # q / k / v biases [heads, head_dim]: 2-D, yet biases
  decays = param_paths.flatten(decay.mask(nnx.state(model, nnx.Param)))
  biases = [path for path in decays if path.endswith("/bias")]
  assert biases and not any(decays[path] for path in biases)
  assert decays["backbone/blocks/0/attention/query/kernel"]


def edited_copy(name: str, tmp_path: pathlib.Path, **fields) -> pathlib.Path:
  """A copy of fixture `name` with config.json fields replaced."""
  directory = tmp_path / name
  shutil.copytree(HF / name, directory)
  config = json.loads((directory / hf.CONFIG).read_text())
  (directory / hf.CONFIG).write_text(json.dumps({**config, **fields}))
  return directory


@pytest.mark.parametrize("name,fields,message", [
    ("llama", dict(model_type="falcon"), r"unsupported Hugging Face architecture 'falcon'.*supported: gpt2, llama"),
    ("bloom", dict(apply_residual_connection_post_layernorm=True),
     r"bloom: apply_residual_connection_post_layernorm=True is not supported"),
    ("llama", dict(hidden_act="gelu"), r"llama: hidden_act='gelu' is not supported \(supported: 'silu'\)"),
    ("llama", dict(rope_parameters=dict(rope_type="proportional", factor=8.0, rope_theta=500.0)),
     r"llama: rope_type='proportional' is not supported \(supported: 'default', 'linear', 'yarn', 'llama3', 'dynamic', "
     r"'longrope'\)"),
    ("llama", dict(rope_parameters=dict(rope_type="llama3", factor=8.0, rope_theta=500.0)),
     r"llama: rope_type='llama3' needs low_freq_factor in rope_parameters$"),
    ("llama_yarn", dict(rope_parameters=dict(rope_type="yarn", factor=4.0, rope_theta=100.0, mscale=0.707)),
     r"llama: yarn mscale=0.707 is not supported"),
    ("llama", dict(rope_parameters=None, rope_scaling=dict(type="dynamic")), r"rope_type='dynamic' needs factor in "),
    ("phi3", dict(rope_parameters=dict(rope_type="default", rope_theta=100.0, partial_rotary_factor=0.5625)),
     r"phi3: partial_rotary_factor=0.5625 rotates 9 features of a head, an odd number \(zoo rotates pairs\)$"),
    ("phi3_longrope", dict(rope_parameters=dict(rope_type="longrope", rope_theta=100.0, short_factor=[1.0] * 8,
                                                original_max_position_embeddings=16)),
     r"phi3: rope_type='longrope' needs long_factor in rope_parameters$"),
    ("phi3_longrope", dict(rope_parameters=dict(rope_type="longrope", rope_theta=100.0, short_factor=[1.0] * 8,
                                                long_factor=[1.0] * 8, original_max_position_embeddings=16,
                                                partial_rotary_factor=0.75)),
     r"phi3: longrope needs 6 short and long factors \(one per rotating feature pair\), got 8 and 8$"),
    ("qwen2", dict(use_sliding_window=True, sliding_window=8, layer_types=["full_attention", "sliding_attention"]),
     r"qwen2: sliding_window=8 on 1 of 2 layers is not supported: zoo's layers share one attention window"),
    ("bert", dict(position_embedding_type="relative_key"), r"bert: position_embedding_type='relative_key'"),
    ("gpt2", dict(scale_attn_by_inverse_layer_idx=True), r"gpt2: scale_attn_by_inverse_layer_idx=True"),
    ("t5", dict(feed_forward_proj="gated-relu"), r"t5: feed_forward_proj='gated-relu' is not supported"),
])
def test_a_field_zoo_cannot_honour_is_a_one_line_error(name, fields, message, tmp_path):
  with pytest.raises(ConversionError, match=message) as error:
    pretrained.load(str(edited_copy(name, tmp_path, **fields)))
  assert "\n" not in str(error.value)


def test_a_tensor_zoo_has_no_place_for_is_an_error(tmp_path):
  directory = edited_copy("llama", tmp_path)
  tensors = safetensors_numpy.load_file(str(directory / hf.WEIGHTS))
  tensors["model.layers.0.self_attn.q_norm.weight"] = np.ones(4, np.float32)
  safetensors_numpy.save_file(tensors, str(directory / hf.WEIGHTS), metadata={"format": "pt"})
  with pytest.raises(ConversionError, match=r"tensor\(s\) zoo has no place for: model.layers.0.self_attn.q_norm"):
    hf.read(directory)


LONGROPE = dict(scaling="longrope", factor=2.0, original_length=8, short_factor=[1.0] * 4, long_factor=[2.0] * 4)


@pytest.mark.parametrize("options,message", [
    (dict(positional=dict(name="xpos")), r"only decoders with encoding 'learned', 'rope', 'alibi'.*got a decoder "
     r"with 'xpos'; the nearest exportable choice: positional.name='rope' \(written as llama\)$"),
    (dict(positional=dict(name="rope"), norm=dict(kind="layernorm")),
     r"not llama-shaped: norm.kind='layernorm' \(needs 'rmsnorm'\)$"),
    (dict(positional=dict(name="learned")), r"not gpt2-shaped: .*mlp.activation='swiglu'.*; the nearest exportable "
                                            r"choice: positional.name='rope' \(written as llama\)$"),
    (dict(positional=dict(name="rope", options=dict(p=0.5))), r"RoPE options \{.*'p': 0.5\} have no LLaMA equivalent"),
    (dict(positional=dict(name="rope", options=LONGROPE | dict(interleaved=True))),
     r"RoPE options \{.*'interleaved': True.*\} have no Phi-3 equivalent \(supported: base, fraction, scaling "
     r"'none' or 'longrope'\)"),
    (dict(positional=dict(name="rope", options=LONGROPE), mlp=dict(activation="swiglu", bias=True)),
     r"not phi3-shaped: mlp.bias=True \(needs False\)"),
])
def test_a_model_hugging_face_cannot_reproduce_is_not_exported(options, message, tmp_path):
  llama_like = dict(mlp=dict(activation="swiglu"), norm=dict(kind="rmsnorm"))
  options = dict(vocab_size=32, num_layers=1, d_model=16, max_length=16, attention=dict(num_heads=2),
                 **{**llama_like, **options})
  params = params_of(models.build("decoder", options))
  with pytest.raises(ConversionError, match=message):
    hf.write("decoder", options, params, tmp_path)
  assert not (tmp_path / hf.WEIGHTS).exists()


def run_module(module: str, *args, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env={**cli_env(), **(env or {})},
                        capture_output=True, text=True, timeout=timeout)


def test_convert_from_hf_then_back_on_the_command_line(tmp_path):
  out, back = tmp_path / "zoo", tmp_path / "hf"
  result = run_module("launch.convert", f"--from_hf={HF / 'llama'}", f"--out={out}")
  assert result.returncode == 0, result.stderr[-3000:]
  model, config = pretrained.load(str(out))
  assert config.model_name == "decoder" and config.model.attention.num_kv_heads == 2
  assert_parity(outputs(model, reference("llama"), "llama"), reference("llama"))
  result = run_module("launch.convert", f"--workdir={out}", f"--to_hf={back}")
  assert result.returncode == 0, result.stderr[-3000:]
  written, original = (safetensors_numpy.load_file(str(d / hf.WEIGHTS)) for d in (back, HF / "llama"))
  assert written.keys() == original.keys() and all(np.array_equal(written[k], original[k]) for k in written)


def test_convert_refusals_are_one_line_usage_errors(tmp_path):
  result = run_module("launch.convert", f"--from_hf={edited_copy('llama', tmp_path, hidden_act='relu')}",
                      f"--out={tmp_path / 'out'}")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
      "error: llama: hidden_act='relu' is not supported (supported: 'silu')"]
  result = run_module("launch.convert", f"--from_hf={HF / 'llama'}")
  assert result.returncode == 2 and "error: --from_hf needs --out=DIR" in result.stderr


@pytest.mark.slow  # a training journey; test_hf_loop.py fine-tunes a llama through the same config by default
def test_fine_tune_a_converted_llama_with_urpe_in_place_of_rope(tmp_path, data_dir):
  converted, workdir = tmp_path / "llama", tmp_path / "run"
  family, options, params = hf.read(HF / "llama")  # what launch.convert --out writes (its own test runs it)
  pretrained.write_converted(converted, family, options, params, source=str(HF / "llama"))
  result = run_module("launch.train", f"--config=configs/finetune_hf_swap.py:{converted},urpe,smoke",
                      f"--workdir={workdir}", "--config.train.progress_bar=False", env={"ZOO_DATA_DIR": data_dir})
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((workdir / "init_from.json").read_text())
  assert report["new"] and all("/encoding/" in p for p in report["new"])  # URPE's tables; RoPE had none
  assert not report["dropped"] and not report["mismatched"]
  assert set(report["loaded"]) == set(params)
  trained = pretrained.load_params(str(workdir))
  assert trained.step == 4 and trained.config["model"]["positional"]["name"] == "urpe"
  assert trained.config["model"]["attention"]["num_kv_heads"] == 2


def digests(directory: pathlib.Path) -> dict[str, str]:
  """sha256 of each written tensor's float32 bytes, as tests/make_hf_fixtures.py records them."""
  return {name: hashlib.sha256(np.ascontiguousarray(value, np.float32).tobytes()).hexdigest()
          for name, value in sorted(safetensors_numpy.load_file(str(directory / hf.WEIGHTS)).items())}


@pytest.mark.slow  # the export journey of the default suite: test_convert_from_hf_then_back_on_the_command_line
def test_shipped_lm_rope_exports_then_its_converted_folder_exports_the_same(tmp_path):
  first, converted, second = tmp_path / "hf", tmp_path / "zoo", tmp_path / "hf_again"
  result = run_module("launch.convert", "--pretrained=lm_rope", f"--to_hf={first}")
  assert result.returncode == 0, result.stderr[-3000:]
  fixture = HF / "export_lm_rope"  # transformers loaded what the fixture script exported and ran the batch
  assert json.loads((first / hf.CONFIG).read_text()) == json.loads((fixture / hf.CONFIG).read_text())
  assert digests(first) == json.loads((fixture / "tensors.json").read_text())
  model, _ = pretrained.load("lm_rope")
  ref = reference("export_lm_rope")
  assert_parity(outputs(model, ref, "decoder"), ref, EXPORT_TOLERANCE)
  assert_reimport_computes_the_same(first, model, dataclasses.asdict(model.config), ref)
  result = run_module("launch.convert", f"--from_hf={first}", f"--out={converted}")
  assert result.returncode == 0, result.stderr[-3000:]
  result = run_module("launch.convert", f"--workdir={converted}", f"--to_hf={second}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert digests(second) == digests(first)  # a converted folder is a source like any other


@pytest.mark.slow  # a training run first; test_hf_loop exports a fine-tune's workdir by default
def test_a_default_config_workdir_exports_as_the_fixture_transformers_ran(tmp_path, data_dir):
  workdir, exported = tmp_path / "run", tmp_path / "hf"
  result = run_module("launch.train", "--config=configs/lm_bytes.py:rope,smoke", f"--workdir={workdir}",
                      "--config.train.steps=2", f"--config.train.data_dir={data_dir}",
                      "--config.train.progress_bar=False")
  assert result.returncode == 0, result.stderr[-3000:]
  result = run_module("launch.convert", f"--workdir={workdir}", f"--to_hf={exported}")
  assert result.returncode == 0, result.stderr[-3000:]
  # The same architecture as export_default (zoo's scaled, tied embeddings), whose logits transformers matched.
  assert json.loads((exported / hf.CONFIG).read_text()) == json.loads((HF / "export_default" / hf.CONFIG).read_text())
  model, config = pretrained.load(str(workdir))
  assert config.model.get("scale_embeddings", True) and config.model.tie_embeddings
  assert_reimport_computes_the_same(exported, model, dataclasses.asdict(model.config), reference("export_default"))


@pytest.mark.parametrize("name,message", [
    ("lm_alibi", "error: export: this decoder is not bloom-shaped: attention.qkv_bias=False (needs True), "
                 "attention.out_bias=False (needs True), mlp.activation='swiglu' (needs 'gelu_tanh'), mlp.bias=False "
                 "(needs True), norm.kind='rmsnorm' (needs 'layernorm'), embedding_norm=False (needs True); the "
                 "nearest exportable choice: positional.name='rope' (written as llama)"),
    pytest.param("lm_learned", "error: export: this decoder is not gpt2-shaped: attention.qkv_bias=False (needs "
                 "True), attention.out_bias=False (needs True), mlp.activation='swiglu' (needs 'gelu_tanh'), "
                 "mlp.bias=False (needs True), norm.kind='rmsnorm' (needs 'layernorm'); the nearest exportable "
                 "choice: positional.name='rope' (written as llama)", marks=pytest.mark.slow),
])
def test_shipped_decoders_no_hugging_face_architecture_computes_are_refused_in_one_line(name, message, tmp_path):
  result = run_module("launch.convert", f"--pretrained={name}", f"--to_hf={tmp_path / 'hf'}")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [message]
  assert not (tmp_path / "hf").exists()
