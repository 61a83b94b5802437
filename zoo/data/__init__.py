"""Tasks (tfds builders) and the grain input pipeline."""

from zoo.data import tasks
from zoo.data.pipeline import make_dataset, prepare

__all__ = ["make_dataset", "prepare", "tasks"]
