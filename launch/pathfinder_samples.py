r"""Writes a grid of Pathfinder images to a PNG, so a person can look at what the model is asked to solve.

  python -m launch.pathfinder_samples --difficulty=hard --rows=4 --columns=8 --out=/tmp/pathfinder_hard.png

The images are the first rows × columns examples of the chosen split, exactly as the task writes them (same seed,
same options). Example i has label i % 2, so with an even column count the even columns hold negatives (markers on
two contours) and the odd columns positives (markers on one contour); each image is enlarged `--scale` times, with a
gray frame between images. Needs no imaging library: the PNG is written with zlib.
"""

from __future__ import annotations

import struct
import sys
import zlib

import numpy as np
from absl import flags

from launch.cli import fail, run
from zoo.data import tasks

_DIFFICULTY = flags.DEFINE_enum("difficulty", "hard", ["easy", "intermediate", "hard"], "contour length")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 32, "image side in pixels", lower_bound=1)
_SPLIT = flags.DEFINE_enum("split", "train", ["train", "validation", "test"], "the task's split")
_SEED = flags.DEFINE_integer("seed", 0, "the task's seed")
_ROWS = flags.DEFINE_integer("rows", 4, "rows of images", lower_bound=1)
_COLUMNS = flags.DEFINE_integer("columns", 8, "images per row", lower_bound=1)
_SCALE = flags.DEFINE_integer("scale", 4, "enlargement of each image", lower_bound=1)
_OUT = flags.DEFINE_string("out", None, "the PNG file to write", required=True)


def png_bytes(image: np.ndarray) -> bytes:
  """An 8-bit grayscale PNG of `image` [height, width] uint8."""
  def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

  height, width = image.shape
  rows = b"".join(b"\x00" + image[r].tobytes() for r in range(height))  # filter type 0 per row
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
          + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def grid(images: list[np.ndarray], columns: int, scale: int, frame: int = 2) -> np.ndarray:
  """Images [size, size] tiled `columns` per row, each enlarged `scale` times, with a gray frame."""
  size = images[0].shape[0] * scale
  rows = -(-len(images) // columns)
  canvas = np.full((rows * (size + frame) + frame, columns * (size + frame) + frame), 96, np.uint8)
  for k, image in enumerate(images):
    top, left = frame + (k // columns) * (size + frame), frame + (k % columns) * (size + frame)
    canvas[top:top + size, left:left + size] = np.kron(image, np.ones((scale, scale), np.uint8))
  return canvas


def main() -> None:
  options = dict(difficulty=_DIFFICULTY.value, image_size=_IMAGE_SIZE.value, seed=_SEED.value)
  try:
    samples = list(tasks.build("pathfinder", options).images(_SPLIT.value, _ROWS.value * _COLUMNS.value))
  except ValueError as e:  # contours that do not fit the image size
    fail(str(e))
  try:
    with open(_OUT.value, "wb") as f:
      f.write(png_bytes(grid([image for image, _ in samples], _COLUMNS.value, _SCALE.value)))
  except OSError as e:
    fail(f"cannot write --out: {e}")
  labels = " ".join(str(label) for _, label in samples[:_COLUMNS.value])
  print(f"wrote {_OUT.value}: {len(samples)} {_DIFFICULTY.value} images; labels of each row: {labels}",
        file=sys.stderr)


if __name__ == "__main__":
  run(main)
