r"""Causal language modelling on WikiText-103, word level (vocabulary: every training word, ≈ 267k), from the raw files you have.

  python -m launch.train --config=configs/lm_wikitext103.py:rope --workdir=/tmp/zoo/lm_wikitext103 \
      --config.task.folder=~/data/wikitext-103

The argument is the positional encoding plus an optional ",smoke". The model and optimizer are
configs/lm_bytes.py's; rows of 256 tokens, never packed (the corpus is one stream cut into rows).
"""

import ml_collections

from configs import lm_bytes
from configs.base import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  _, variants = parse_arg(arg, default="rope")
  config = lm_bytes.get_config(arg)
  config.task = ml_collections.ConfigDict(dict(name="lm_wikitext103", folder="", length=256))
  if "smoke" in variants:
    config.task.length = 32
  return config
