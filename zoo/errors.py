"""Errors shared by modules that must not import each other (or JAX): a config file reads Hugging Face configs
through `zoo.convert.architectures` without importing the model code that `zoo.pretrained` needs."""


class CheckpointError(ValueError):
  """A checkpoint that cannot be found, verified or read: the message is one line naming it."""
