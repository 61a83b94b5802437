"""Bad input fails early with a ValueError that names the problem and the valid choices."""

import dataclasses
import importlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from configs.base import get_base_config
from conftest import REPO, TINY, forward, random_tokens, tiny_model
from test_tasks_registry import LOADER_FILES
from zoo import models, positional
from zoo.convert import hf  # noqa: F401 — registers the Hugging Face reader (finetune_hf_swap's source)
from zoo.train.init_from import fine_tune_config
from zoo.train.options import OPTION_SECTIONS, SHARDING_RULES, parse_experiment


@pytest.mark.parametrize("config,message", [
    (dict(positional=dict(name="fourier")), r"unknown positional encoding 'fourier'; valid choices: alibi, cope, "
                                            r"fire, fox, kerple_log, kerple_power, lappe, learned, memory_rpe, none"),
    (dict(positional=dict(options={"bas": 500.0})), r"positional encoding 'rope': unknown option\(s\) 'bas'; "
                                                     r"valid options: base, fraction, interleaved"),
    (dict(positional=dict(options={"interleaved": "yes"})), r"option 'interleaved' must be bool, got 'yes'"),
    (dict(positional=dict(name="t5_bias", options={"num_buckets": 32.5})), r"option 'num_buckets' must be int"),
    (dict(positional=dict(name="urpe", options={"bias": "alibi"})),
     r"'alibi' is not a valid choice; valid choices: 'rpe' \| 't5_bias'"),
    (dict(positional=dict(name="t5_bias", options={"max_distance": 10})),
     r"t5_bias: max_distance \(10\) must exceed the exact range num_buckets // 2 \(16\)"),
    (dict(positional=dict(options={"fraction": 0.0})), r"rope: fraction must be in \(0, 1\]"),
    (dict(positional=dict(options={"scaling": "longrope"})),
     r"rope: short_factor and long_factor go together, with scaling 'longrope' and only with it"),
    (dict(positional=dict(options={"attention_factor": 2.0})), r"rope: attention_factor must be > 0, with scaling "
                                                                r"'longrope' only, got 2.0"),
    (dict(num_layers="2"), r"model 'decoder': option 'num_layers' must be int, got '2'"),
    (dict(num_layers=True), r"option 'num_layers' must be int, got True"),
    (dict(norm=dict(kind="batchnorm")),
     r"'batchnorm' is not a valid choice; valid choices: 'layernorm' \| 'rmsnorm' \| 'none'"),
    (dict(d_model=30, attention=dict(num_heads=4)), r"attention.num_heads \(4\) must divide d_model \(30\)"),
    (dict(attention=dict(impl="flash")), r"unknown attention impl 'flash'; valid choices: auto, chunked, linear, "
                                         r"pallas, xla"),
    (dict(dropout=1.5), r"dropout must be in \[0, 1\)"),
    (dict(depth=3), r"model 'decoder': unknown option\(s\) 'depth'; valid options: vocab_size, num_layers"),
    (dict(attention=dict(num_head=3)), r"model 'decoder': attention: unknown option\(s\) 'num_head'; valid "
                                       r"options: num_heads, head_dim"),
    (dict(num_heads=4, pe_options={}), r"^model.num_heads moved to model.attention.num_heads; model.pe_options "
                                       r"moved to model.positional.options$"),
    (dict(norm="rmsnorm"), r"^model.norm \(a name\) moved to model.norm.kind$"),
    (dict(attention=dict(impl="linear"), positional=dict(name="alibi")),
     r"positional encoding 'alibi' uses the logit_bias hook, which attention.impl='linear' cannot apply .*: "
     r"lappe, learned, none, rope"),
    (dict(attention=dict(impl="linear"), positional=dict(name="urpe")), r"'urpe' uses the logit_bias and prob_scale "
                                                                          r"hook"),
    (dict(attention=dict(core=dict(feature_map="relu"))), r"model.attention.core \(impl='xla'\): unknown "
                                                            r"option\(s\) 'feature_map'; valid options: \(none\)"),
    (dict(attention=dict(impl="linear", core=dict(feature_map="elu"))),
     r"'elu' is not a valid choice; valid choices: 'favor' \| 'relu'"),
    (dict(attention=dict(impl="linear", dropout=0.1)), r"model.attention: dropout needs the attention matrix"),
    (dict(attention=dict(impl="linear", core=dict(num_features=0))), r"num_features must be >= 1"),
    (dict(positional=dict(name="spe_sine", options={"num_realizations": 0})),
     r"spe_sine: num_realizations must be >= 1"),
    (dict(positional=dict(name="spe_conv", options={"kernel": 3})),
     r"unknown option\(s\) 'kernel'; valid options: num_realizations, kernel_size, gated, share_across_layers"),
])
def test_bad_model_configs(config, message):
  with pytest.raises(ValueError, match=message):
    models.build("decoder", config)


def test_unknown_model_and_encoding_names():
  with pytest.raises(ValueError, match=r"unknown model 'gpt'; valid choices: decoder, encoder"):
    models.build("gpt")
  with pytest.raises(ValueError, match=r"unknown positional encoding 'cosine'; valid choices: .*urpe"):
    positional.get("cosine")


def test_encoder_only_options_are_rejected_by_the_decoder():
  with pytest.raises(ValueError, match=r"unknown option\(s\) 'pooling'"):
    models.build("decoder", dict(pooling="cls"))


def test_learned_table_rejects_sequences_longer_than_max_length():
  model = tiny_model("decoder", "learned")
  with pytest.raises(ValueError, match=rf"sequence length 60 exceeds max_length {TINY['max_length']}"):
    model(random_tokens(0, (1, 60)))
  with pytest.raises(ValueError, match=r"position 50 is beyond the table \(max_length 48"):
    model(random_tokens(0, (1, 4)), positions=jnp.array([[0, 1, 2, 50]]))
  with pytest.raises(ValueError, match=r"cache_length 50 exceeds what the 'learned' encoding supports"):
    models.generate(model, random_tokens(0, (1, 40)), max_new_tokens=10, rng=jax.random.key(0))


def test_spe_conv_noise_grid_ends_at_max_length():
  model = tiny_model("decoder", "spe_conv")
  with pytest.raises(ValueError, match=r"spe_conv: position 50 is beyond the table \(max_length 48"):
    model(random_tokens(0, (1, 4)), positions=jnp.array([[0, 1, 2, 50]]))
  with pytest.raises(ValueError, match=r"cache_length 50 exceeds what the 'spe_conv' encoding supports"):
    models.generate(model, random_tokens(0, (1, 40)), max_new_tokens=10, rng=jax.random.key(0))


def test_linear_attention_refuses_packed_sequences():
  model = tiny_model("encoder", "rope", attention=dict(impl="linear"), head="token")
  with pytest.raises(ValueError, match=r"linear attention does not support segment_ids \(packed sequences\)"):
    model(random_tokens(0, (1, 4)), segment_ids=jnp.array([[1, 1, 2, 2]]))


def test_relative_encodings_extrapolate_past_max_length():
  model = tiny_model("decoder", "alibi")
  assert forward(model, random_tokens(0, (1, 60)), None, None).shape == (1, 60, TINY["vocab_size"])


def test_bad_generation_arguments():
  model = tiny_model("decoder", "rope")
  prompts = random_tokens(0, (1, 4))
  for kwargs, message in [(dict(temperature=-1.0), "temperature must be >= 0"),
                          (dict(top_k=99), r"top_k must be an int in \[0, 32\]"),
                          (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
                          (dict(max_new_tokens=0), "max_new_tokens must be >= 1")]:
    with pytest.raises(ValueError, match=message):
      models.generate(model, prompts, rng=jax.random.key(0), **{"max_new_tokens": 3, **kwargs})


def test_registering_a_name_twice_fails():
  with pytest.raises(ValueError, match="'rope' is already registered"):
    positional.register("rope")(type("Again", (positional.PositionalEncoding,), {}))


def test_the_base_config_is_every_option_field_at_its_default():
  """One source of defaults: configs/base.py holds each field of the option dataclasses, at the dataclass's value."""
  base = get_base_config().to_dict()
  for section, cls in OPTION_SECTIONS.items():
    assert base[section] == {f.name: f.default for f in dataclasses.fields(cls)}, section
  assert base["sharding_rules"] == SHARDING_RULES and base["task"] == {}
  # The family fills the sections; their open mappings are there for dotted overrides.
  assert base["model"] == {"attention": {"core": {}}, "mlp": {}, "norm": {}, "positional": {"options": {}}}


def test_every_option_field_is_settable_on_the_command_line():
  """launch.train accepts `--config.<section>.<field>` for every option field (momentum was once refused as an
  unknown key); with no --workdir it stops right after reading the config, so nothing trains."""
  overrides = [f"--config.{section}.{f.name}={f.default}" for section, cls in OPTION_SECTIONS.items()
               for f in dataclasses.fields(cls) if f.name != "momentum"]
  result = subprocess.run([sys.executable, "-m", "launch.train", "--config=configs/pi.py:urpe,smoke", *overrides,
                           "--config.optimizer.momentum=0.5"], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert (result.returncode, result.stderr) == (2, "error: --workdir is required\n")


def test_core_and_encoding_options_are_dotted_overrides_in_a_config_that_does_not_list_them():
  """The sections' open mappings (`attention.core`, `positional.options`) are in every config, so a key inside them
  is an override like any other: the manifest's train_command of lm_spe_sine_linear sets the core's num_features."""
  result = subprocess.run([sys.executable, "-m", "launch.train", "--config=configs/finetune_lm_long.py",
                           "--config.model.attention.impl=linear", "--config.model.attention.core.num_features=8",
                           "--config.model.positional.options.num_realizations=4"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
  assert (result.returncode, result.stderr) == (2, "error: --workdir is required\n")


@pytest.mark.parametrize("path", sorted(p.stem for p in (REPO / "configs").glob("*.py")
                                        if p.stem not in ("__init__", "base")))
def test_every_config_file_builds_an_experiment(path, tmp_path):
  """Both variants of every config file validate in full (a fine-tune after taking its checkpoint's options; a task
  that reads files given a tiny folder of them)."""
  module = importlib.import_module(f"configs.{path}")
  for arg in ("", "smoke"):
    config = fine_tune_config(module.get_config(arg).to_dict())
    config["task"].update(LOADER_FILES.get(config["task"]["name"], lambda _: {})(tmp_path / arg))
    assert parse_experiment(config).train.steps >= 1
