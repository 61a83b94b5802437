"""Pathfinder: markers connected through lit pixels exactly in positives (an independent BFS), balance, shapes, seeds;
the PNG grid command."""

import collections
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from conftest import REPO
from zoo.data import prepare, tasks


def components(mask: np.ndarray) -> list[set]:
  """8-connected components of the True pixels of `mask`, by breadth-first search."""
  seen, found = set(), []
  for start in zip(*np.nonzero(mask)):
    if start in seen:
      continue
    component, queue = {start}, collections.deque([start])
    while queue:
      y, x = queue.popleft()
      for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
          n = (y + dy, x + dx)
          if 0 <= n[0] < mask.shape[0] and 0 <= n[1] < mask.shape[1] and mask[n] and n not in component:
            component.add(n)
            queue.append(n)
    seen |= component
    found.append(component)
  return found


@pytest.mark.parametrize("difficulty", ["easy", "intermediate", "hard"])
def test_markers_are_connected_exactly_in_positive_images(difficulty, data_dir):
  task = tasks.build("pathfinder", dict(difficulty=difficulty, num_train=24, num_eval=8, num_test=8))
  source = prepare(task, data_dir).as_data_source(split="train")
  labels = []
  for i in range(24):
    pixels, label = source[i]["inputs"], int(source[i]["targets"])
    assert pixels.shape == (1024,) and pixels.dtype == np.uint8
    image = pixels.reshape(32, 32)
    markers = components(image == 255)
    assert len(markers) == 2 and all(len(m) == 9 for m in markers)  # two 3×3 marker squares
    lit = components(image > 0)
    connected = any(markers[0] <= c and markers[1] <= c for c in lit)
    assert connected == bool(label)
    assert len(lit) == 2 + 5  # two contours and five distractors, none touching another
    labels.append(label)
  assert labels.count(1) == labels.count(0) == 12
  assert task.model_fields() == {"vocab_size": 256, "max_length": 1024, "head": "sequence", "num_classes": 2}


def test_longer_contours_have_more_lit_pixels():
  lit = {d: np.mean([(image > 0).sum() for image, _ in tasks.build("pathfinder", dict(difficulty=d)).images(
      "validation", 10)]) for d in ("easy", "hard")}
  assert lit["hard"] > 1.5 * lit["easy"]


def test_same_seed_same_images_other_seed_other_images():
  first = lambda seed: next(tasks.build("pathfinder", dict(seed=seed)).images("train", 1))[0]
  np.testing.assert_array_equal(first(0), first(0))
  assert not np.array_equal(first(0), first(1))


def test_impossible_layouts_are_an_error():
  with pytest.raises(ValueError, match="could not place 2 contours of 14 segments and 5 distractors in a 8x8"):
    next(tasks.build("pathfinder", dict(image_size=8)).images("train", 1))


def test_sample_grid_is_a_valid_png_of_the_images(tmp_path):
  out = tmp_path / "grid.png"
  result = subprocess.run([sys.executable, "-m", "launch.pathfinder_samples", "--difficulty=easy", "--rows=2",
                           "--columns=3", "--scale=2", f"--out={out}"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stderr.endswith("6 easy images; labels of each row: 0 1 0\n"), result.stderr[-3000:]
  data = out.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  width, height = struct.unpack(">II", data[16:24])
  assert (width, height) == (3 * 66 + 2, 2 * 66 + 2)
  idat = data.index(b"IDAT")
  rows = np.frombuffer(zlib.decompress(data[idat + 4:idat + 4 + struct.unpack(">I", data[idat - 4:idat])[0]]),
                       np.uint8).reshape(height, width + 1)
  assert not rows[:, 0].any()  # filter byte 0 on every row
  first = next(tasks.build("pathfinder", dict(difficulty="easy")).images("train", 1))[0]
  np.testing.assert_array_equal(rows[2:66:2, 1 + 2:1 + 66:2], first)


def test_a_geometry_that_cannot_hold_the_contours_fails_when_the_config_is_read():
  with pytest.raises(ValueError, match=r"could not place 2 contours of 6 segments and 5 distractors in a 12x12 image"):
    tasks.build("pathfinder", {"difficulty": "easy", "image_size": 12})
