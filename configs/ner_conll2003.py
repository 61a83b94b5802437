r"""CoNLL-2003 named entities with a one-layer, one-head encoder (Kajitsuka & Sato 2024's real-data experiment).

  python -m launch.train --config=configs/ner_conll2003.py:sinusoidal --workdir=/tmp/zoo/conll \
      --config.task.conll_dir=~/data/conll2003

The argument is the positional encoding plus an optional ",smoke". `task.conll_dir` must hold `train.txt` and
`valid.txt` in the CoNLL-2003 column format (names configurable: `task.train_file`, `task.validation_file`). The
paper reports near-perfect *training* accuracy (the `accuracy` entries of metrics.jsonl); sizes are not stated.
"""

import ml_collections

from configs import memorization
from configs.base import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  _, variants = parse_arg(arg, default="sinusoidal")
  config = memorization.get_config(arg)
  config.task = ml_collections.ConfigDict(dict(name="ner_conll2003", conll_dir="", train_file="train.txt",
                                               validation_file="valid.txt", length=128, max_vocab=0))
  config.train.update(steps=20_000, batch_size=32)
  if "smoke" in variants:
    config.task.length = 16
    config.train.update(steps=4, batch_size=8)
  return config
