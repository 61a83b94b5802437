r"""LRA Text: byte-level IMDb sentiment (shared/papers/spe.md), from the aclImdb folders you have.

  python -m launch.train --config=configs/lra_text.py:sinusoidal --workdir=/tmp/zoo/lra_text \
      --config.task.folder=~/data/aclImdb

The argument is the positional encoding plus an optional ",smoke". Reviews are cut at 4000 bytes (LRA's 4K; set
`task.length=1000` for the 1K variant); 25k training reviews, the 25k test reviews as the validation split. LRA's
vanilla Transformer reaches 64.3 %. The model is configs/listops.py's CPU-sized encoder.
"""

import ml_collections

from configs import listops
from configs.base import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  _, variants = parse_arg(arg, default="sinusoidal")
  config = listops.get_config(arg)
  config.task = ml_collections.ConfigDict(dict(name="lra_text", folder="", length=4000))
  config.optimizer.learning_rate = 5e-4
  if "smoke" in variants:
    config.task.length = 32
    config.train.batch_size = 2
  else:
    config.optimizer.warmup_steps = 500
    config.train.update(steps=20_000, eval_every=2000, eval_batches=100, checkpoint_every=2000)
  return config
