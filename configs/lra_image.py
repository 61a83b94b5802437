r"""LRA Image: grayscale CIFAR-10 as a sequence of 1024 pixel tokens, 10 classes.

  python -m launch.train --config=configs/lra_image.py:sinusoidal --workdir=/tmp/zoo/lra_image \
      --config.task.folder=~/data/cifar-10-batches-py

The argument is the positional encoding plus an optional ",smoke". `task.folder` is CIFAR-10's python version
(`data_batch_1..5`, `test_batch`); the test batch is the validation split. LRA's vanilla Transformer reaches 42.4 %.
The model is configs/listops.py's CPU-sized encoder. The smoke variant still runs 1024-token rows (the image size is
fixed).
"""

import ml_collections

from configs import lra_text


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = lra_text.get_config(arg)
  config.task = ml_collections.ConfigDict(dict(name="lra_image", folder=""))
  return config
