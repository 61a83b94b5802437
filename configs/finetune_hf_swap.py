r"""Fine-tunes a converted Llama-shaped decoder with its encoding swapped: URPE (default) or ALiBi in place of RoPE.

  python -m launch.convert --from_hf=/models/tiny-llama --out=/tmp/zoo/tiny-llama
  python -m launch.train --config=configs/finetune_hf_swap.py:/tmp/zoo/tiny-llama,alibi --workdir=/tmp/zoo/ft_swap
  python -m launch.train --config=configs/finetune_hf_swap.py:smoke --workdir=/tmp/zoo/ft_swap_smoke

The argument is the model — a folder `launch.convert --out` wrote, or a Hugging Face directory itself (converted while
loading); default: the tests' tiny random Llama, tests/fixtures/hf/llama — then optionally `urpe` or `alibi` and
`smoke`. The model is the converted one with `model.positional.name` replaced: the file states only that, the
training run takes every other option from the checkpoint (`zoo.train.init_from.fine_tune_config`; with
`--config.model.positional.name=rope` the checkpoint's RoPE base and scaling too), every parameter loads through
`train.init_from` (RoPE has no parameters of its own, so nothing is dropped; URPE's tables are new), and all of
them train. The task is byte-level language modelling on local text (`configs/lm_bytes.py`), so the model's
vocabulary must be the 256 bytes; for another vocabulary set
`--config.train.init_from_allow_mismatch=True` (the embeddings then start afresh). ",smoke" runs four steps on a few
files.
"""

import json
import pathlib

import ml_collections

from configs.base import get_base_config, parse_arg
from zoo.convert.architectures import architecture  # numpy only: no JAX in a config file

ENCODINGS = ("urpe", "alibi")
DEFAULT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hf" / "llama"


def check_decoder(source: pathlib.Path) -> None:
  """A ValueError unless `source` is a converted decoder or a Hugging Face decoder directory."""
  path = source / "config.json"
  config = json.loads(path.read_text()) if path.is_file() else {}
  family = architecture(config).family if "model_type" in config else config.get("model_name")
  if family != "decoder":
    raise ValueError(f"config arg: {source} is neither a converted decoder nor a Hugging Face decoder directory")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  source, variants = parse_arg(arg, default=str(DEFAULT), flags=(*ENCODINGS, "smoke"))
  source = pathlib.Path(source).expanduser().resolve()
  pe = next((name for name in ENCODINGS if name in variants), ENCODINGS[0])
  config = get_base_config()
  config.task = ml_collections.ConfigDict(dict(name="byte_lm", text_dir="", pattern="*.py", max_files=200,
                                               length=256, pack=True))
  check_decoder(source)
  config.model.positional.name = pe
  config.optimizer.update(learning_rate=1e-3, warmup_steps=20)
  config.train.update(init_from=str(source), steps=300, batch_size=8, checkpoint_every=300, eval_batches=4)
  if "smoke" in variants:
    config.task.update(max_files=25, length=32)
    config.train.update(steps=4, batch_size=4, log_every=2, checkpoint_every=4, eval_batches=2)
  return config
