"""Pathfinder (Linsley et al. 2018, as used by the Long Range Arena; shared/papers/spe.md), re-implemented in numpy.

A grayscale image holds two long curved contours, a few short distractor contours and two markers; the label says
whether the markers sit on the two ends of the same contour (1) or on ends of different contours (0). Flattened to
`image_size²` pixel tokens, the model must trace a path across the whole sequence.

Generation (after Linsley's generator, simplified to solid 1-pixel lines): each contour starts at a random free
pixel with a random heading and grows `contour_length` segments of `segment_length` pixels; each segment turns by
0, ±22.5° or ±45°, tried in a random order weighted towards small turns (smoothness), and a turn is taken only if its
pixels stay in the image, do not touch the contour's own older pixels and keep one empty pixel between them and every
other contour (collision-free). Both long contours reserve a 3×3 marker square at each end; distractors have
`contour_length // 3` segments. An image whose contours cannot be placed is redrawn. Contour pixels have intensity
`CONTOUR` and the 3×3 markers `MARKER`; everything else is 0. Because different contours never touch, the markers are
connected through lit pixels exactly when they are on the same contour. Labels alternate (example i has label
i % 2), so every split is balanced.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import tensorflow_datasets as tfds

from zoo.config import check
from zoo.data.tasks.base import Task
from zoo.data.tasks.examples import TaskExamples, data_name, tensor
from zoo.data.tasks.registry import register

CONTOUR_LENGTHS = {"easy": 6, "intermediate": 9, "hard": 14}  # segments per long contour (LRA's three splits)
CONTOUR, MARKER = 160, 255
TURNS = np.array([-2, -1, 0, 1, 2]) * np.pi / 8
TURN_WEIGHTS = np.exp(-np.abs(np.arange(-2, 3))) / np.exp(-np.abs(np.arange(-2, 3))).sum()
CONTOUR_TRIES, IMAGE_TRIES = 30, 200
SPLITS = ("train", "validation", "test")


def line(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
  """The 8-connected pixels from a to b (both included)."""
  steps = max(abs(b[0] - a[0]), abs(b[1] - a[1]), 1)
  return list(dict.fromkeys((round(a[0] + (b[0] - a[0]) * k / steps), round(a[1] + (b[1] - a[1]) * k / steps))
                            for k in range(steps + 1)))


def square(center: tuple[int, int]) -> list[tuple[int, int]]:
  """The 3×3 pixels around `center`."""
  return [(center[0] + dy, center[1] + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def dilate(mask: np.ndarray) -> np.ndarray:
  """`mask` grown by one pixel in all 8 directions."""
  padded = np.pad(mask, 1)
  size = mask.shape[0]
  return np.any([padded[dy:dy + size, dx:dx + size] for dy in range(3) for dx in range(3)], axis=0)


def grow_contour(rng: np.random.Generator, blocked: np.ndarray, segments: int, segment_length: int,
                 markers: bool) -> list[tuple[int, int]] | None:
  """The pixels of one contour avoiding `blocked` [size, size] (and, with `markers`, room for both end markers)."""
  size = blocked.shape[0]
  margin = 1 if markers else 0  # a marker square must fit inside the image
  inside = lambda p: margin <= p[0] < size - margin and margin <= p[1] < size - margin
  free = lambda pixels: all(inside(p) and not blocked[p] for p in pixels)
  for _ in range(CONTOUR_TRIES):
    start = (int(rng.integers(margin, size - margin)), int(rng.integers(margin, size - margin)))
    if not free(square(start) if markers else [start]):
      continue
    pixels, heading, position = [start], rng.uniform(0, 2 * np.pi), np.array(start, float)
    for _ in range(segments):
      for turn in rng.choice(len(TURNS), len(TURNS), replace=False, p=TURN_WEIGHTS):
        angle = heading + TURNS[turn]
        target = position + segment_length * np.array([np.sin(angle), np.cos(angle)])
        end = (int(round(target[0])), int(round(target[1])))
        new = line(pixels[-1], end)[1:]
        older = np.array(pixels[:-2]).reshape(-1, 1, 2)  # [n, 1, 2] vs new pixels [1, m, 2]
        touches_itself = bool((np.abs(older - np.array(new).reshape(1, -1, 2)).max(axis=-1) <= 1).any())
        if new and free(new) and not touches_itself:
          pixels += new
          heading, position = angle, target
          break
      else:
        break  # no turn fits: start the contour again
    else:
      ends_apart = max(abs(pixels[0][0] - pixels[-1][0]), abs(pixels[0][1] - pixels[-1][1])) >= 4
      if not markers or (ends_apart and free(square(pixels[-1]))):
        return pixels
  return None


def pathfinder_image(rng: np.random.Generator, label: int, *, size: int, contour_length: int, segment_length: int,
                     num_distractors: int) -> np.ndarray:
  """One image [size, size] uint8 whose markers are on one contour (label 1) or on two (label 0)."""
  for _ in range(IMAGE_TRIES):
    blocked = np.zeros((size, size), bool)
    contours = []
    for k in range(2 + num_distractors):
      markers = k < 2
      pixels = grow_contour(rng, blocked, contour_length if markers else max(contour_length // 3, 1),
                            segment_length, markers)
      if pixels is None:
        break
      footprint = np.zeros_like(blocked)
      footprint[tuple(np.array(pixels + (square(pixels[0]) + square(pixels[-1]) if markers else [])).T)] = True
      blocked |= dilate(footprint)
      contours.append(pixels)
    else:
      image = np.zeros((size, size), np.uint8)
      for pixels in contours:
        image[tuple(np.array(pixels).T)] = CONTOUR
      ends = [contours[0][0], contours[0][-1]] if label else [contours[0][0], contours[1][0]]
      for end in ends:
        image[tuple(np.array(square(end)).T)] = MARKER
      return image
  raise ValueError(f"task 'pathfinder': could not place 2 contours of {contour_length} segments and "
                   f"{num_distractors} distractors in a {size}x{size} image; use a larger image or fewer/shorter "
                   f"contours")


@register("pathfinder")
class Pathfinder(Task):
  family = "encoder"
  objective = "sequence_classification"

  @dataclasses.dataclass(frozen=True)
  class Options:
    difficulty: Literal["easy", "intermediate", "hard"] = "hard"  # contour length 6 / 9 / 14 segments
    image_size: int = 32
    segment_length: int = 2  # pixels per segment
    num_distractors: int = 5
    num_train: int = 160_000
    num_eval: int = 20_000
    num_test: int = 20_000
    seed: int = 0

    def __post_init__(self):
      for field in ("image_size", "segment_length", "num_train", "num_eval", "num_test"):
        check(getattr(self, field) >= 1, f"task 'pathfinder': {field} must be >= 1, got {getattr(self, field)}")
      check(self.num_distractors >= 0, f"task 'pathfinder': num_distractors must be >= 0, got {self.num_distractors}")
      # One image now: a geometry that cannot hold the contours (easy ones in 12 x 12) fails when the config is
      # read, with the message naming the sizes, instead of when the data set is generated.
      pathfinder_image(np.random.default_rng(self.seed), 1, size=self.image_size,
                       contour_length=CONTOUR_LENGTHS[self.difficulty], segment_length=self.segment_length,
                       num_distractors=self.num_distractors)

  @property
  def length(self) -> int:
    return self.options.image_size ** 2

  def model_fields(self):
    return {"vocab_size": 256, "max_length": self.length, "head": "sequence", "num_classes": 2}

  def images(self, split: str, count: int):
    """(image [size, size] uint8, label) for the first `count` examples of `split`."""
    o = self.options
    for i in range(count):
      rng = np.random.default_rng([o.seed, SPLITS.index(split), i])
      yield pathfinder_image(rng, i % 2, size=o.image_size, contour_length=CONTOUR_LENGTHS[o.difficulty],
                             segment_length=o.segment_length, num_distractors=o.num_distractors), i % 2

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    o = self.options
    sizes = {"train": o.num_train, "validation": o.num_eval, "test": o.num_test}

    def examples(split: str):
      for i, (image, label) in enumerate(self.images(split, sizes[split])):
        yield i, {"inputs": image.reshape(-1), "targets": np.int32(label)}

    return TaskExamples(name=data_name(self.name, o),
                        features={"inputs": tensor((self.length,), np.uint8), "targets": tensor()},
                        splits={split: (lambda split=split: examples(split)) for split in SPLITS},
                        data_dir=data_dir)
