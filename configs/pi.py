r"""Position Identification (URPE paper, shared/papers/urpe.md): the target at position i is i.

  python -m launch.train --config=configs/pi.py:urpe --workdir=/tmp/zoo/pi_urpe
  python -m launch.train --config=configs/pi.py:rpe --workdir=/tmp/zoo/pi_rpe --config.train.steps=2000

The argument is the positional encoding (any registered name: urpe, rpe, t5_bias, alibi, rope, sinusoidal, learned,
none, ...) plus an optional ",smoke" for a seconds-long run. CPU-sized: a 2-layer pre-LN encoder, d_model 64, 4 heads,
length 64, vocabulary 100. URPE reaches accuracy ≈ 1.0; RPE-only models stay near chance (1/64), however long.
"""

import ml_collections

from configs.base import get_base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  pe, variants = parse_arg(arg, default="urpe")
  config = get_base_config()
  config.task = ml_collections.ConfigDict(dict(
      name="position_identification", vocab_size=100, length=64, num_train=65_536, num_eval=1_024, seed=0))
  config.model = ml_collections.ConfigDict(dict(
      num_layers=2, d_model=64, dropout=0.0, dtype="float32",
      attention=dict(num_heads=4, impl="xla", dropout=0.0, core={}), mlp=dict(dim=256, activation="gelu"),
      norm=dict(kind="layernorm", position="pre"), positional=dict(name=pe, options={})))
  config.optimizer.update(learning_rate=3e-3, warmup_steps=100, schedule="cosine", weight_decay=0.0)
  config.train.update(steps=800, batch_size=64, log_every=50, eval_every=0, checkpoint_every=400)
  if "smoke" in variants:
    config.task.update(vocab_size=10, length=16, num_train=512, num_eval=64)
    config.model.update(num_layers=1, d_model=16, attention=dict(num_heads=2), mlp=dict(dim=32))
    config.optimizer.warmup_steps = 2
    config.train.update(steps=6, batch_size=8, log_every=2, checkpoint_every=3)
  return config
