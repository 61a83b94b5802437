"""`python -m launch.extrapolate` (= `launch.reproduce extrapolate`): train short with the shared training loop,
evaluate long."""

import math

import numpy as np
import optax
import pytest

from launch import extrapolate
from test_reproduce import cli
from zoo.experiments import Options, get
from zoo import pretrained
from zoo.experiments.extrapolate import MULTIPLES, SETUPS, held_out_bytes
from zoo.experiments.sweep import read_rows


def test_unknown_encoding_names_the_valid_ones(capsys):
  assert cli("--encodings=alibi,bogus", "--quick", main=extrapolate.main) == 2
  assert capsys.readouterr().err.startswith("error: unknown encoding 'bogus'; valid choices: alibi,")
  assert cli("--steps=0", main=extrapolate.main) == 2
  assert capsys.readouterr().err.startswith("error: flag --steps=0: ")


def test_scaled_rope_fine_tunes_the_rope_run_which_runs_first():
  runs = get("extrapolate").runs("quick", Options(encodings=("alibi", "rope+yarn"), steps=50))
  assert [run.name for run in runs] == ["alibi", "rope", "rope+yarn"]
  scaled = runs[-1]
  assert scaled.init_from == "rope" and scaled.config["train"]["steps"] == 5
  assert scaled.config["task"]["length"] == 2 * SETUPS["quick"].length
  assert scaled.config["model"]["positional"]["options"] == {"scaling": "yarn", "factor": 4,
                                                             "original_length": SETUPS["quick"].length}


def test_a_tiny_run_walks_every_stage_and_a_rerun_resumes(tmp_path):
  """Training by the shared loop, RoPE's scaled fine-tune from the rope run's workdir, evaluation at every length
  with the chunked core, the table and the plot; a second run trains nothing."""
  args = ["--tiny", "--steps=3", "--encodings=rope+yarn", f"--workdir={tmp_path / 'runs'}", f"--out={tmp_path}"]
  assert cli(*args, main=extrapolate.main) == 0
  rows = read_rows(tmp_path / "tiny.jsonl")
  assert [r["encoding"] for r in rows] == ["rope", "rope+yarn"]
  assert all(len(r["losses"]) == len(MULTIPLES) and all(map(math.isfinite, r["losses"])) for r in rows)
  model, config = pretrained.load(str(tmp_path / "runs" / "rope"))  # the trained model as the loop left it
  length, held_out = rows[0]["train_length"], held_out_bytes(config.task.max_files)
  windows = np.stack([held_out[s:s + length + 1] for s in range(0, rows[0]["eval_windows"] * 16 * length, length)])
  at_1x = optax.softmax_cross_entropy_with_integer_labels(model(windows[:, :-1]), windows[:, 1:]).mean()
  assert float(at_1x) == pytest.approx(rows[0]["losses"][0], abs=1e-5)  # evaluated with the trained parameters
  assert (tmp_path / "runs" / "rope+yarn" / "init_from.json").is_file()  # the fine-tune loaded the rope run
  assert (tmp_path / "tiny.png").read_bytes().startswith(b"\x89PNG")
  results = sorted((tmp_path / "runs").glob("*/result.json"))
  stamps = [p.stat().st_mtime_ns for p in results]
  assert cli(*args, main=extrapolate.main) == 0
  assert [p.stat().st_mtime_ns for p in results] == stamps and read_rows(tmp_path / "tiny.jsonl") == rows


@pytest.mark.slow
def test_quick_run_writes_a_row_per_encoding(tmp_path):
  """CoPE's two walks over the key chunks and learned's table grown past the training length included."""
  args = ["--quick", "--steps=20", "--encodings=cope,learned,alibi,rope+yarn", f"--workdir={tmp_path / 'runs'}",
          f"--out={tmp_path}"]
  assert cli(*args, main=extrapolate.main) == 0
  rows = read_rows(tmp_path / "quick.jsonl")
  assert [r["encoding"] for r in rows] == ["cope", "learned", "alibi", "rope", "rope+yarn"]
  assert all(r["eval_lengths"] == [m * SETUPS["quick"].length for m in MULTIPLES] for r in rows)
  table = (tmp_path / "quick.md").read_text()
  assert table.count("| alibi |") == 1 and table.count("| rope+yarn |") == 1
  assert (tmp_path / "quick.png").read_bytes().startswith(b"\x89PNG")
