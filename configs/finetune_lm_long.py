r"""Fine-tunes the shipped `lm_rope` decoder at 4× the length it was trained at (128 → 512 bytes).

  python -m launch.train --config=configs/finetune_lm_long.py --workdir=/tmp/zoo/ft_lm_long
  python -m launch.evaluate --pretrained=lm_rope --length=512     # before: the same data at 512, not fine-tuned

Every parameter loads (RoPE has no length-sized tables); documents are cut at 512 bytes. ",smoke" runs three steps
on a few files.
"""

import ml_collections

from configs.base import from_pretrained, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  _, variants = parse_arg(arg, default="")
  config = from_pretrained("lm_rope")
  config.task.length *= 4
  config.optimizer.update(learning_rate=1e-3, warmup_steps=20)
  config.train.update(steps=300, batch_size=8, eval_batch_size=4, checkpoint_every=300)
  if "smoke" in variants:
    config.task.max_files = 25
    config.train.update(steps=3, batch_size=2, eval_batch_size=2, log_every=1, checkpoint_every=3, eval_batches=1)
  return config
