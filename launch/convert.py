r"""Converts between local Hugging Face model directories and zoo models.

  python -m launch.convert --from_hf=/models/tiny-llama --out=/tmp/zoo/tiny-llama     # HF -> zoo
  python -m launch.convert --workdir=/tmp/zoo/ft_llama --to_hf=/tmp/hf/ft_llama       # zoo decoder -> HF
  python -m launch.convert --pretrained=NAME --to_hf=DIR

`--out` receives `model.safetensors` (zoo's parameter paths) and `config.json` (family and model options), which
`zoo.pretrained.load` and `train.init_from` read like any checkpoint. `--to_hf` writes a gpt2- (learned
positions), llama- (RoPE; phi3- for LongRoPE or partial rotary) or bloom-shaped (ALiBi) decoder as `config.json` +
`model.safetensors` for transformers' `from_pretrained` (zoo's default √d_model-scaled, tied embeddings as an untied
model with the scale in its input table: the same function); the source may be a shipped name, a workdir or a
converted folder. A model or config field the other side cannot reproduce exactly is an error naming it (and, where
one exists, the encoding that would export).
"""

from __future__ import annotations

import dataclasses

from absl import flags, logging

from launch.cli import define_model_flags, fail, model_source, run

_PRETRAINED, _WORKDIR, _STEP = define_model_flags()
_FROM_HF = flags.DEFINE_string("from_hf", None, "a local Hugging Face model directory (config.json + *.safetensors)")
_OUT = flags.DEFINE_string("out", None, "with --from_hf: the folder to write the zoo model to")
_TO_HF = flags.DEFINE_string("to_hf", None, "write the model of --pretrained / --workdir as a Hugging Face directory")


def main() -> None:
  logging.set_verbosity(logging.WARNING)
  if (_FROM_HF.value is None) == (_TO_HF.value is None):
    fail("give exactly one of --from_hf=DIR (with --out=DIR) and --to_hf=DIR (with --pretrained or --workdir)")
  if _FROM_HF.value is not None and (_OUT.value is None or _PRETRAINED.value or _WORKDIR.value):
    fail("--from_hf needs --out=DIR and takes neither --pretrained nor --workdir")
  if _TO_HF.value is not None and _OUT.value is not None:
    fail("--to_hf is the output folder; --out goes with --from_hf")

  from zoo import models, pretrained  # noqa: PLC0415 — after flag parsing
  from zoo.convert import hf  # noqa: PLC0415

  try:
    if _FROM_HF.value is not None:
      if not hf.is_hf_directory(_FROM_HF.value):
        fail(f"--from_hf={_FROM_HF.value}: no config.json with a model_type (not a Hugging Face model directory)")
      model_name, options, params = hf.read(_FROM_HF.value)
      pretrained.write_converted(_OUT.value, model_name, options, params, source=_FROM_HF.value)
      print(f"wrote {_OUT.value}: {model_name}, {sum(v.size for v in params.values()):,} parameters")
      return
    loaded = pretrained.load_params(*model_source(_PRETRAINED, _WORKDIR, _STEP))
    model = pretrained.build(loaded.config, loaded.params)
    family = next(name for name in models.available() if models.get(name) is type(model))
    hf.write(family, dataclasses.asdict(model.config), loaded.params, _TO_HF.value)
  except pretrained.CheckpointError as e:
    fail(str(e))
  print(f"wrote {_TO_HF.value}")


if __name__ == "__main__":
  run(main)
