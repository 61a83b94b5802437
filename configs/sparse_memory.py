r"""Sparse-memory regression (Wang & E 2024; shared/papers/sparse_memory.md): Tasks I–III on ±1 inputs.

  python -m launch.train --config=configs/sparse_memory.py:t5_bias --workdir=/tmp/zoo/sm_boolean
  python -m launch.train --config=configs/sparse_memory.py:alibi --workdir=/tmp/zoo/sm_heavy \
      --config.task.target=heavy_tailed --config.task.scored=last --config.model.attention.num_heads=16

The argument is the positional encoding (log-type: t5_bias; lin-type: alibi) plus an optional ",smoke"; the target
is `task.target` (relu = the paper's sparse Boolean / complex readout, sum = simple readout, adaptive, heavy_tailed,
light_tailed) and the lags `task.lags`. The paper's length is 1000 and its width / learning rate / batch are not
stated; this config uses length 256 (the paper's lags 48, 56, 99 fit), one layer, 8 heads, d_model 128, and 3000
AdamW steps with squared loss. Sweep `model.attention.num_heads` for the error-vs-heads curves.
"""

import ml_collections

from configs.base import get_base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  pe, variants = parse_arg(arg, default="t5_bias")
  config = get_base_config()
  config.task = ml_collections.ConfigDict(dict(
      name="sparse_memory", target="relu", length=256, lags=(48, 56, 99), relu_width=64, adaptive_lags=(1, 2),
      depth=2, heavy_exponent=0.5, light_rate=5.0, scored="all", num_train=16_384, num_eval=512, seed=0))
  config.model = ml_collections.ConfigDict(dict(
      num_layers=1, d_model=128, dropout=0.0, dtype="float32",
      attention=dict(num_heads=8, impl="xla", dropout=0.0, core={}), mlp=dict(dim=256, activation="gelu"),
      norm=dict(kind="layernorm", position="pre"), positional=dict(name=pe, options={})))
  config.optimizer.update(learning_rate=1e-3, warmup_steps=200, weight_decay=0.01)
  config.train.update(steps=3000, batch_size=32, log_every=100, eval_every=500, checkpoint_every=1000)
  if "smoke" in variants:
    config.task.update(length=32, lags=(3, 7), num_train=64, num_eval=16)
    config.model.update(d_model=16, attention=dict(num_heads=2), mlp=dict(dim=32))
    config.optimizer.warmup_steps = 2
    config.train.update(steps=4, batch_size=8, log_every=2, eval_every=0, checkpoint_every=0)
  return config
