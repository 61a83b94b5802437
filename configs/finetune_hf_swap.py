r"""Fine-tunes a converted Llama-shaped decoder with its encoding swapped: URPE (default) or ALiBi in place of RoPE.

  python -m launch.convert --from_hf=/models/tiny-llama --out=/tmp/zoo/tiny-llama
  python -m launch.train --config=configs/finetune_hf_swap.py:/tmp/zoo/tiny-llama,alibi --workdir=/tmp/zoo/ft_swap

The argument is the converted folder (what `launch.convert --out` wrote), then optionally `urpe` or `alibi` and
`smoke`. The model is the converted one with `pe` replaced: every other parameter loads through `train.init_from`
(RoPE has no parameters of its own, so nothing is dropped; URPE's tables are new), and all of them train. The task
is byte-level language modelling on local text (`configs/lm_bytes.py`), so the model's vocabulary must be the 256
bytes; for another vocabulary set `--config.train.init_from_allow_mismatch=True` (the embeddings then start afresh).
",smoke" runs four steps on a few files.
"""

import json
import pathlib

import ml_collections

from configs.base import get_base_config, parse_arg

ENCODINGS = ("urpe", "alibi")
TASK_FIXED = ("vocab_size", "max_length")  # byte_lm sets them (256 bytes, the task's length)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  source, variants = parse_arg(arg, default="", flags=(*ENCODINGS, "smoke"))
  if not source:
    raise ValueError("config arg: give the converted model's folder first, e.g. "
                     "configs/finetune_hf_swap.py:/tmp/zoo/tiny-llama,alibi")
  path = pathlib.Path(source).expanduser() / "config.json"
  converted = json.loads(path.read_text()) if path.is_file() else {}
  if converted.get("model_name") != "decoder":
    raise ValueError(f"config arg: {source} is not a converted decoder (no config.json with model_name 'decoder'); "
                     f"convert it with python -m launch.convert --from_hf=DIR --out={source}")
  pe = next((name for name in ENCODINGS if name in variants), ENCODINGS[0])
  config = get_base_config()
  config.task = ml_collections.ConfigDict(dict(name="byte_lm", text_dir="", pattern="*.py", max_files=200,
                                               length=256, pack=True))
  model = {k: v for k, v in converted["model"].items() if k not in TASK_FIXED}
  config.model = ml_collections.ConfigDict(dict(model, pe=pe, pe_options={}))
  config.optimizer.update(learning_rate=1e-3, warmup_steps=20)
  config.train.update(init_from=str(pathlib.Path(source).expanduser()), steps=300, batch_size=8,
                      checkpoint_every=300, eval_batches=4)
  if "smoke" in variants:
    config.task.update(max_files=25, length=32)
    config.train.update(steps=4, batch_size=4, log_every=2, checkpoint_every=4, eval_batches=2)
  return config
