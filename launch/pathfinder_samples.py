r"""Writes a grid of Pathfinder images to a PNG, so a person can look at what the model is asked to solve.

  python -m launch.pathfinder_samples --difficulty=hard --rows=4 --columns=8 --out=/tmp/pathfinder_hard.png

The images are the first rows × columns examples of the chosen split, exactly as the task writes them (same seed,
same options). Example i has label i % 2, so with an even column count the even columns hold negatives (markers on
two contours) and the odd columns positives (markers on one contour); each image is enlarged `--scale` times, with a
gray frame between images. Needs no imaging library: the PNG is written with zlib.
"""

from __future__ import annotations

import argparse
import struct
import sys
import zlib

import numpy as np

from zoo.data import tasks


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


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--difficulty", default="hard", choices=["easy", "intermediate", "hard"])
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--split", default="train", choices=["train", "validation", "test"])
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--rows", type=int, default=4)
  parser.add_argument("--columns", type=int, default=8)
  parser.add_argument("--scale", type=int, default=4)
  parser.add_argument("--out", required=True, help="the PNG file to write")
  args = parser.parse_args(argv)
  task = tasks.build("pathfinder", dict(difficulty=args.difficulty, image_size=args.image_size, seed=args.seed))
  samples = list(task.images(args.split, args.rows * args.columns))
  with open(args.out, "wb") as f:
    f.write(png_bytes(grid([image for image, _ in samples], args.columns, args.scale)))
  labels = " ".join(str(label) for _, label in samples[:args.columns])
  print(f"wrote {args.out}: {len(samples)} {args.difficulty} images; labels of each row: {labels}", file=sys.stderr)


if __name__ == "__main__":
  main()
