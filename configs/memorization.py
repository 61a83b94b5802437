r"""Memorization capacity (Kajitsuka & Sato 2024; shared/papers/memorization.md): one layer, one head, random labels.

  python -m launch.train --config=configs/memorization.py:sinusoidal --workdir=/tmp/zoo/memo_n1024
  python -m launch.train --config=configs/memorization.py:sinusoidal --workdir=/tmp/zoo/memo_n4096 \
      --config.task.num_sequences=4096

The argument is the positional encoding plus an optional ",smoke". N distinct random sequences (length 32,
vocabulary 64) with random binary per-token labels; the metric is training accuracy (the validation split is the
training set). Sweep `task.num_sequences` against `model.d_model` for capacity curves. The paper's rank-1 W_Q, W_K
needs a model option this branch does not have yet; sizes are not stated in the paper and chosen here.
"""

import ml_collections

from configs.base import get_base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  pe, variants = parse_arg(arg, default="sinusoidal")
  config = get_base_config()
  config.task = ml_collections.ConfigDict(dict(name="memorization", num_sequences=1024, length=32, vocab_size=64,
                                               num_classes=2, seed=0))
  config.model = ml_collections.ConfigDict(dict(
      num_layers=1, d_model=128, dropout=0.0, dtype="float32",
      attention=dict(num_heads=1, impl="xla", dropout=0.0, core={}), mlp=dict(dim=512, activation="gelu"),
      norm=dict(kind="layernorm", position="pre"), positional=dict(name=pe, options={})))
  config.optimizer.update(learning_rate=3e-3, warmup_steps=100, schedule="constant", weight_decay=0.0)
  config.train.update(steps=5000, batch_size=64, log_every=100, eval_every=1000, checkpoint_every=1000)
  if "smoke" in variants:
    config.task.update(num_sequences=32, length=16, vocab_size=8)
    config.model.update(d_model=16, mlp=dict(dim=32))
    config.optimizer.warmup_steps = 2
    config.train.update(steps=4, batch_size=8, log_every=2, eval_every=0, checkpoint_every=0)
  return config
