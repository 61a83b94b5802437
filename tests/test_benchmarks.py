"""The benchmark commands run as a user runs them (tiny sizes): every row they document comes out, and what they
compare is comparable — zoo's train step and the hand-written one compile to the same FLOPs; rows saved with --out
are the printed ones, and --table reads them back."""

import json
import subprocess
import sys

import pytest

from conftest import REPO


def run(*argv) -> str:
  result = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def rows_of(*argv) -> list[dict]:
  return [json.loads(line) for line in run(*argv).splitlines() if line.startswith("{")]


def test_bench_train_rows_compare_the_same_model():
  rows = rows_of("launch.bench_train", "--num_layers=2", "--d_model=32", "--num_heads=2", "--batch_size=2",
                 "--length=16", "--repeats=1", "--peak_size=64", "--compile_layers=1,2")
  by_row = {}
  for row in rows:
    by_row.setdefault(row["row"], []).append(row)
  assert by_row["peak"][0]["flops_per_s"] > 0
  steps = {row["impl"]: row for row in by_row["step"]}
  assert set(steps) == {"zoo", "minimal_jax", "x_transformers"}  # x-transformers: measured or a row saying why not
  zoo, minimal = steps["zoo"], steps["minimal_jax"]
  assert zoo["malloc"] == minimal["malloc"] and zoo["tokens_per_s"] > 0 and minimal["tokens_per_s"] > 0
  # The same decoder: the compiled steps' FLOPs agree (zoo adds its metrics' passes over the parameters).
  assert abs(zoo["step_flops"] / minimal["step_flops"] - 1) < 0.02, (zoo["step_flops"], minimal["step_flops"])
  assert "zoo_speed_over_minimal_jax" in by_row["summary"][0]
  assert {(r["layers"], r["scan_layers"]) for r in by_row["compile"]} == {(1, True), (2, True), (1, False),
                                                                           (2, False)}
  assert by_row["compile_summary"][0]["layers"] == [1, 2]


def test_bench_generate_times_cached_and_full_decoding_for_both_attention_kinds(tmp_path):
  out = tmp_path / "rows.jsonl"
  out.write_text('{"earlier": "row"}\n')
  rows = rows_of("launch.bench_generate", "--positions=16", "--num_layers=1", "--d_model=32", "--num_heads=2",
                 "--num_features=8", "--repeats=2", f"--out={out}")
  kinds = [(r["attention"], r["impl"], r["position"], r["layers"], r["repeats"]) for r in rows]
  assert kinds == [("softmax", "xla", 16, 1, 2), ("linear", "linear", 16, 1, 2)]
  for row in rows:
    assert row["cached_median_s"] > 0 and row["full_median_s"] > 0 and row["full_over_cached"] > 0
  assert [json.loads(line) for line in out.read_text().splitlines()] == [{"earlier": "row"}, *rows]  # appended


def test_bench_attention_rows_and_their_table(tmp_path):
  out = tmp_path / "rows.jsonl"
  rows = rows_of("launch.bench_attention", "--lengths=64", "--encodings=rpe,urpe", "--impls=xla", "--repeats=1",
                 f"--out={out}")
  assert [(r.get("encoding"), r.get("summary")) for r in rows] == [("rpe", None), ("urpe", None),
                                                                   (None, "urpe_over_rpe")]
  assert all(r["ran"] and r["repeats"] == 1 and r["time_min_s"] > 0 for r in rows[:2])
  lines = run("launch.bench_attention", f"--table={out}").splitlines()
  assert lines[0].startswith("| encoding | L | xla cpu MiB |")
  assert [line.split(" | ")[0] for line in lines[2:4]] == ["| rpe", "| urpe"]
  assert lines[-1].startswith(f"| xla cpu | 0k | {rows[2]['temp_ratio']} |")


@pytest.mark.slow
def test_bench_linear_times_both_implementations_and_fits_the_exponent():
  rows = rows_of("launch.bench_linear", "--lengths=32,64", "--repeats=1", "--softmax_max_length=32",
                 "--num_realizations=4", "--num_features=8")
  timed = {(r["impl"], r["length"]): "median_s" in r for r in rows if "length" in r}
  assert timed == {("linear", 32): True, ("softmax", 32): True, ("linear", 64): True, ("softmax", 64): False}
  assert [(r["impl"], r["lengths"]) for r in rows if "fit" in r] == [("linear", [32, 64])]


def test_estimate_table_shows_fits_refusals_and_rows_whose_cost_could_not_be_scaled(tmp_path):
  base = dict(size="125m", length=8192, pe="alibi", impl="xla", topology="v5e:4x4", hbm_gib=15.8)
  rows = [dict(base, peak_gib=3.5, fits=True, step_flops=4.2e12, compute_s=0.021, memory_s=0.05, estimated_mfu=0.12,
               compute_only_mfu=0.3),
          dict(base, error="RESOURCE_EXHAUSTED: Ran out of memory; temporaries (36.2G) exceed"),
          dict(base, peak_gib=9.0, fits=True, cost_error="the unscanned two-layer program ... was refused: ...")]
  saved = tmp_path / "rows.jsonl"
  saved.write_text("".join(json.dumps(row) + "\n" for row in rows))
  lines = run("launch.estimate_tpu", f"--table={saved}").splitlines()
  assert lines[2] == "| 125M | 8k | alibi | xla | v5e:4x4 | 3.50 (15.8) | yes | 4.2 | 0.021 | 0.050 | 0.12 / 0.30 |"
  assert "no: 36.2GiB of temporaries asked" in lines[3]
  assert lines[4].startswith("| 125M | 8k | alibi | xla | v5e:4x4 | 9.00 (15.8) | yes | — |")
  assert lines[4].endswith("(its two-layer cost program was refused) |")
