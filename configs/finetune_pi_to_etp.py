r"""Fine-tunes the shipped Position Identification `urpe` encoder on Even Token Prediction.

  python -m launch.train --config=configs/finetune_pi_to_etp.py --workdir=/tmp/zoo/ft_pi_to_etp

Same model and length (64) as `pi_urpe`; only the head differs: PI predicts one of 64 positions, ETP one of 101
tokens, so `train.init_from_allow_mismatch` lets the new head start afresh while the embeddings, blocks and URPE's
tables start from PI (the load report lists them). ",smoke" (the argument) runs four steps on a small data set.
"""

import ml_collections

from configs.base import from_pretrained, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  _, variants = parse_arg(arg, default="")
  config = from_pretrained("pi_urpe")
  config.task.name = "even_token_prediction"
  config.optimizer.update(learning_rate=1e-3, warmup_steps=50)
  config.train.update(init_from_allow_mismatch=True, steps=1000, checkpoint_every=1000)
  if "smoke" in variants:
    config.task.update(num_train=256, num_eval=64)
    config.train.update(steps=4, batch_size=8, log_every=2, checkpoint_every=4)
  return config
