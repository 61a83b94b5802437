r"""ListOps (LRA; shared/papers/spe.md): the value (0–9) of a nested MIN / MAX / MED / SM expression, brackets kept.

  python -m launch.train --config=configs/listops.py:sinusoidal --workdir=/tmp/zoo/listops
  python -m launch.train --config=configs/listops.py:rope,smoke --workdir=/tmp/zoo/listops_smoke

The argument is the positional encoding plus an optional ",smoke". The task defaults are LRA's (96k / 2k / 2k
trees of 500–2000 tokens, padded to 2000; generating them takes a few minutes once). The model is CPU-sized rather
than LRA's (4 layers, d_model 512): a 4-layer encoder, d_model 128, mean pooling. LRA's vanilla Transformer reaches
36.4 % test accuracy; predicting the majority class gives ≈ 17 %.
"""

import ml_collections

from configs.base import get_base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  pe, variants = parse_arg(arg, default="sinusoidal")
  config = get_base_config()
  config.task = ml_collections.ConfigDict(dict(
      name="listops", num_train=96_000, num_eval=2_000, num_test=2_000, min_length=500, max_length=2_000,
      max_depth=10, max_args=10, seed=0))
  config.model = ml_collections.ConfigDict(dict(
      num_layers=4, d_model=128, dropout=0.1, dtype="float32", pooling="mean",
      attention=dict(num_heads=4, impl="xla", dropout=0.1, core={}), mlp=dict(dim=256, activation="gelu"),
      norm=dict(kind="layernorm", position="pre"), positional=dict(name=pe, options={})))
  config.optimizer.update(learning_rate=1e-3, warmup_steps=1000, weight_decay=0.1)
  config.train.update(steps=10_000, batch_size=32, log_every=100, eval_every=1000, checkpoint_every=1000)
  if "smoke" in variants:
    config.task.update(num_train=64, num_eval=16, num_test=16, min_length=4, max_length=32)
    config.model.update(num_layers=1, d_model=16, attention=dict(num_heads=2), mlp=dict(dim=32))
    config.optimizer.warmup_steps = 2
    config.train.update(steps=4, batch_size=8, log_every=2, eval_every=0, checkpoint_every=0)
  return config
