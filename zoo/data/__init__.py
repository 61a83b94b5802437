"""Tasks (tfds builders) and the grain input pipeline."""

from zoo.data import tasks
from zoo.data.pipeline import TaskDataError, make_dataset, prepare

__all__ = ["TaskDataError", "make_dataset", "prepare", "tasks"]
