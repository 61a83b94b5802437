r"""Causal language modelling on text8, character level (27 symbols; 90M / 5M / 5M characters), from the raw file.

  python -m launch.train --config=configs/lm_text8.py:rope --workdir=/tmp/zoo/lm_text8 \
      --config.task.folder=~/data/text8

The argument is the positional encoding plus an optional ",smoke". Everything else is configs/lm_enwik8.py's.
"""

import ml_collections

from configs import lm_enwik8


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = lm_enwik8.get_config(arg)
  config.task.name = "lm_text8"
  return config
