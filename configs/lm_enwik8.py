r"""Causal language modelling on enwik8, byte level (90M / 5M / 5M bytes), from the raw files you have.

  python -m launch.train --config=configs/lm_enwik8.py:rope --workdir=/tmp/zoo/lm_enwik8 \
      --config.task.folder=~/data/enwik8

The argument is the positional encoding plus an optional ",smoke". The model and optimizer are
configs/lm_bytes.py's; rows of 512 tokens, never packed (the corpus is one stream cut into rows).
"""

import ml_collections

from configs import lm_bytes
from configs.base import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  _, variants = parse_arg(arg, default="rope")
  config = lm_bytes.get_config(arg)
  config.task = ml_collections.ConfigDict(dict(name="lm_enwik8", folder="", file="", length=512,
                                               eval_bytes=5_000_000))
  if "smoke" in variants:
    config.task.length = 32
  return config
