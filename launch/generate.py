r"""Continues a prompt with any loadable decoder, streaming the output.

  python -m launch.generate --pretrained=lm_rope --prompt="def main(" --max_new_tokens=200
  python -m launch.generate --workdir=/tmp/zoo/lm_rope --prompt_file=prompt.py --temperature=0.8 --top_p=0.95
  python -m launch.generate --workdir=/models/tiny-llama --prompt="1 2 3"    # a Hugging Face or converted folder

Text tasks (byte or character vocabularies, `Task.alphabet`) take the prompt as text and print decoded text; other
tasks, and models without a zoo task (a Hugging Face directory or a `launch.convert --out` folder, whose tokenizer
zoo does not have), take and print space-separated token ids. Temperature 0 is greedy. The tokens are those
`zoo.models.generate` returns for the same prompt, options and --seed (the same prefill, decode steps and random
keys), printed one by one as they are decoded.
"""

from __future__ import annotations

import codecs
import pathlib
import sys

from absl import flags, logging

from launch.cli import define_model_flags, fail, model_source, run

_PRETRAINED, _WORKDIR, _STEP = define_model_flags()
_PROMPT = flags.DEFINE_string("prompt", None, "the prompt (text for text tasks, else space-separated token ids)")
_PROMPT_FILE = flags.DEFINE_string("prompt_file", None, "read the prompt from this file instead")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 200, "how many tokens to generate", lower_bound=1)
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "sampling temperature; 0 = greedy")
_TOP_K = flags.DEFINE_integer("top_k", 0, "sample among the k most likely tokens; 0 = off")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "nucleus sampling: the smallest set with this probability; 1 = off")
_SEED = flags.DEFINE_integer("seed", 0, "random seed of the sampling")


def prompt_text() -> str:
  if (_PROMPT.value is None) == (_PROMPT_FILE.value is None):
    fail("give exactly one of --prompt=TEXT and --prompt_file=PATH")
  if _PROMPT_FILE.value is None:
    return _PROMPT.value
  try:
    return pathlib.Path(_PROMPT_FILE.value).read_text()
  except OSError as e:
    fail(f"cannot read --prompt_file: {e}")


def encode(text: str, alphabet: bytes | None, vocab_size: int) -> list[int]:
  """Token ids of the prompt: bytes looked up in the task's alphabet, or space-separated ids."""
  if alphabet is None:
    try:
      ids = [int(word) for word in text.split()]
    except ValueError:
      fail(f"this model reads token ids, not text: give the prompt as space-separated token ids, got {text[:40]!r}")
    if not all(0 <= i < vocab_size for i in ids):
      fail(f"prompt token ids must be in [0, {vocab_size})")
    return ids
  index = {byte: i for i, byte in enumerate(alphabet)}
  unknown = sorted({chr(b) for b in text.encode() if b not in index})
  if unknown:
    fail(f"the prompt has characters outside the model's alphabet: {''.join(unknown)!r}")
  return [index[b] for b in text.encode()]


def main() -> None:
  logging.set_verbosity(logging.WARNING)
  source, step = model_source(_PRETRAINED, _WORKDIR, _STEP)
  text = prompt_text()

  import jax  # noqa: PLC0415 — after flag parsing
  import jax.numpy as jnp  # noqa: PLC0415
  from flax import nnx  # noqa: PLC0415

  from zoo import pretrained  # noqa: PLC0415
  from zoo.models.sampling import check_sampling, sample  # noqa: PLC0415
  from zoo.train.options import task_of  # noqa: PLC0415

  try:
    model, config = pretrained.load(source, step)
  except pretrained.CheckpointError as e:
    fail(str(e))
  if config.model_name != "decoder":
    fail(f"{source} is of family {config.model_name!r}; generate needs a decoder")
  # A Hugging Face or converted model was trained on no zoo task, so it has no alphabet.
  alphabet = task_of(config.to_dict()).alphabet if "task" in config else None
  prompt = encode(text, alphabet, model.config.vocab_size)
  if not prompt:
    fail("the prompt is empty")
  try:
    check_sampling(_TEMPERATURE.value, _TOP_K.value, _TOP_P.value, model.config.vocab_size)
    cache = model.init_cache(1, len(prompt) + _MAX_NEW_TOKENS.value)
  except ValueError as e:
    fail(str(e))

  @nnx.jit
  def extend(model, tokens, cache):  # [1, t] -> logits of the last token [1, vocab], the cache
    logits, cache = model.extend(tokens, cache)
    return logits[:, -1], cache

  choose = jax.jit(lambda logits, key: sample(logits, key, temperature=_TEMPERATURE.value, top_k=_TOP_K.value,
                                              top_p=_TOP_P.value))
  decoder = codecs.getincrementaldecoder("utf-8")("replace")
  last, cache = extend(model, jnp.asarray([prompt], jnp.int32), cache)
  for key in jax.random.split(jax.random.key(_SEED.value), _MAX_NEW_TOKENS.value):
    token = choose(last, key)  # [1]
    value = int(token[0])
    sys.stdout.write(decoder.decode(alphabet[value:value + 1]) if alphabet is not None else f"{value} ")
    sys.stdout.flush()
    last, cache = extend(model, token[:, None], cache)
  sys.stdout.write((decoder.decode(b"", final=True) if alphabet is not None else "") + "\n")


if __name__ == "__main__":
  run(main)
