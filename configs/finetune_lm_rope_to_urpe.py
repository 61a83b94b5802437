r"""Swaps the shipped `lm_rope` decoder's encoding for URPE and trains only the new positional parameters.

  python -m launch.train --config=configs/finetune_lm_rope_to_urpe.py --workdir=/tmp/zoo/ft_rope_to_urpe

Every parameter of `lm_rope` loads (RoPE has none of its own); URPE's tables (`.../encoding/b/table`,
`.../encoding/c`) are new and the only trainable ones (`train.trainable="encoding"`), so the rest stays bit for bit
the pretrained model. Set `--config.train.trainable=` to fine-tune everything,
`--config.model.positional.name=alibi` for ALiBi (no parameters: then train everything). ",smoke" runs four steps on
a few files.
"""

import ml_collections

from configs.base import from_pretrained, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  _, variants = parse_arg(arg, default="")
  config = from_pretrained("lm_rope")
  config.model.positional.name = "urpe"
  config.optimizer.update(learning_rate=3e-3, warmup_steps=20)
  config.train.update(trainable="encoding", steps=300, checkpoint_every=300)
  if "smoke" in variants:
    config.task.max_files = 25
    config.train.update(steps=4, batch_size=4, log_every=2, checkpoint_every=4, eval_batches=2)
  return config
