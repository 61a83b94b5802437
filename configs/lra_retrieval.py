r"""LRA Retrieval: do two AAN papers cite each other? Byte-level, a shared tower over both, then a dual head.

  python -m launch.train --config=configs/lra_retrieval.py:sinusoidal --workdir=/tmp/zoo/lra_retrieval \
      --config.task.folder=~/data/lra_release/tsv_data

The argument is the positional encoding plus an optional ",smoke". `task.folder` holds LRA's
`new_aan_pairs.train.tsv` and `new_aan_pairs.eval.tsv`; each paper is cut at 4000 bytes. LRA's vanilla Transformer
reaches 57.5 %. The model is configs/listops.py's CPU-sized encoder.
"""

import ml_collections

from configs import lra_text
from configs.base import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  _, variants = parse_arg(arg, default="sinusoidal")
  config = lra_text.get_config(arg)
  config.task = ml_collections.ConfigDict(dict(name="lra_retrieval", folder="",
                                               train_file="new_aan_pairs.train.tsv",
                                               validation_file="new_aan_pairs.eval.tsv", length=4000))
  if "smoke" in variants:
    config.task.length = 32
  return config
