r"""Byte-level causal language modelling on local text (default: the Python standard library's source files).

  python -m launch.train --config=configs/lm_bytes.py:rope --workdir=/tmp/zoo/lm_rope
  python -m launch.train --config=configs/lm_bytes.py:alibi --workdir=/tmp/zoo/lm --config.task.text_dir=~/corpus

The argument is the positional encoding plus an optional ",smoke". Documents (file pieces of ≤ length bytes) are
packed into rows with segment ids, so attention never crosses a document boundary and positions restart per document.
"""

import ml_collections

from configs.base import get_base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  pe, variants = parse_arg(arg, default="rope")
  config = get_base_config()
  config.task = ml_collections.ConfigDict(dict(name="byte_lm", text_dir="", pattern="*.py", max_files=200,
                                               length=256, pack=True))
  config.model = ml_collections.ConfigDict(dict(
      num_layers=4, d_model=128, dropout=0.0, dtype="float32", tie_embeddings=True,
      attention=dict(num_heads=4, impl="xla", dropout=0.0, core={}), mlp=dict(dim=512, activation="swiglu"),
      norm=dict(kind="rmsnorm", position="pre"), positional=dict(name=pe, options={})))
  config.optimizer.update(learning_rate=2e-3, warmup_steps=200, weight_decay=0.1)
  config.train.update(steps=2000, batch_size=32, eval_batches=20, checkpoint_every=500)
  if "smoke" in variants:
    config.task.update(max_files=25, length=32)
    config.model.update(num_layers=1, d_model=16, attention=dict(num_heads=2), mlp=dict(dim=32))
    config.optimizer.warmup_steps = 2
    config.train.update(steps=6, batch_size=8, log_every=2, checkpoint_every=3, eval_batches=2)
  return config
