r"""Pathfinder-32 (LRA; shared/papers/spe.md): are the two markers on the same contour? 1024 pixel tokens, 2 classes.

  python -m launch.train --config=configs/pathfinder.py:sinusoidal --workdir=/tmp/zoo/pathfinder
  python -m launch.train --config=configs/pathfinder.py:rope --workdir=/tmp/zoo/pf_easy \
      --config.task.difficulty=easy
  python -m launch.pathfinder_samples --difficulty=hard --out=/tmp/pathfinder_hard.png   # look at the data

The argument is the positional encoding plus an optional ",smoke". Contour length 6 / 9 / 14 segments for
easy / intermediate / hard (`task.difficulty`); 160k / 20k / 20k images (the hard split takes ≈ 25 min to generate
once on one CPU core). LRA's vanilla Transformer reaches 71.4 %; chance is 50 %. The model is
configs/listops.py's CPU-sized encoder.
"""

import ml_collections

from configs import listops
from configs.base import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  _, variants = parse_arg(arg, default="sinusoidal")
  config = listops.get_config(arg)
  config.task = ml_collections.ConfigDict(dict(
      name="pathfinder", difficulty="hard", image_size=32, segment_length=2, num_distractors=5, num_train=160_000,
      num_eval=20_000, num_test=20_000, seed=0))
  config.model.attention.dropout = 0.0
  config.optimizer.weight_decay = 0.05
  if "smoke" in variants:
    config.task.update(difficulty="easy", image_size=12, segment_length=1, num_distractors=0, num_train=32,
                       num_eval=16, num_test=8)
  else:
    config.train.update(steps=50_000, batch_size=64, eval_every=5000, eval_batches=50, checkpoint_every=5000)
  return config
