r"""Even Token Prediction (URPE paper, shared/papers/urpe.md): output position i < L/2 emits x[2i+1], the rest a filler.

  python -m launch.train --config=configs/etp.py:urpe --workdir=/tmp/zoo/etp_urpe

The argument is the positional encoding (any registered name) plus an optional ",smoke". ETP learns much more
slowly than PI: at length 32 URPE was ≈ 0.84 against RPE ≈ 0.56 after 4,000 steps in the paper notes' CPU runs, and
a position-blind model sits at ≈ 0.5.
"""

import ml_collections

from configs import pi
from configs.base import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  _, variants = parse_arg(arg, default="urpe")
  config = pi.get_config(arg)
  config.task.name = "even_token_prediction"
  if "smoke" not in variants:
    config.task.update(length=32)
    config.train.update(steps=4000, checkpoint_every=1000)
  return config
