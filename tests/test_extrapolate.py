"""`python -m launch.extrapolate`: train short, evaluate long."""

import json
import math

import pytest

from launch import extrapolate


def test_unknown_encoding_names_the_valid_ones(capsys):
  assert extrapolate.main(["--encodings=alibi,bogus", "--quick"]) == 2
  assert "unknown encoding 'bogus'; valid choices:" in capsys.readouterr().err


def test_a_few_steps_walk_every_stage(tmp_path):
  """The quick setup shortened to a few steps: training, RoPE's scaled fine-tune, evaluation at every length with
  the chunked core (CoPE's two walks over the key chunks included), the table and the plot."""
  assert extrapolate.main(["--quick", "--steps=3", "--encodings=cope,rope+yarn", f"--out={tmp_path}"]) == 0
  rows = [json.loads(line) for line in (tmp_path / "quick.jsonl").read_text().splitlines()]
  assert len(rows) == 2 * len(extrapolate.MULTIPLES) and all(math.isfinite(r["loss"]) for r in rows)
  assert (tmp_path / "quick.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_quick_run_writes_a_row_per_encoding(tmp_path):
  assert extrapolate.main(["--quick", "--encodings=alibi,rope+yarn", f"--out={tmp_path}"]) == 0
  rows = [json.loads(line) for line in (tmp_path / "quick.jsonl").read_text().splitlines()]
  assert {(r["encoding"], r["eval_length"]) for r in rows} == {
      (e, m * extrapolate.QUICK.length) for e in ("alibi", "rope+yarn") for m in extrapolate.MULTIPLES}
  table = (tmp_path / "quick.md").read_text()
  assert table.count("| alibi |") == 1 and table.count("| rope+yarn |") == 1
  assert (tmp_path / "quick.png").read_bytes().startswith(b"\x89PNG")
