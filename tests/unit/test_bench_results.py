"""`make bench`'s results: the JSON keys the issue names, the Markdown table, the run counts."""

from __future__ import annotations

import json

import pytest

from pipeline import bench

RESULTS = {
    "cli_help_s": 0.0477,
    "render_s": 3.851,
    "validate_s": 0.7916,
    "execution_s": 10.87,
    "overhead_s": 0.909,
    "etl_rows_per_s": {"10000": 6464, "100000": 26091, "1000000": 58971},
    "make_test_s": 612.3,
    "cores": 2,
    "runs": {"cli_help_s": 5, "render_s": 5, "validate_s": 5, "execution_s": 3,
             "overhead_s": 3, "etl_rows_per_s": 3, "make_test_s": 1},
}  # fmt: skip


def test_results_are_written_as_json_with_exactly_the_figures_and_their_runs(tmp_path):
    json_path, md_path = bench.write_results(RESULTS, tmp_path / "bench")
    written = json.loads(json_path.read_text())
    assert set(written) == {*bench.KEYS, "runs"}
    assert written == RESULTS
    assert md_path.read_text() == bench.markdown(RESULTS)


def test_markdown_table_gives_each_figure_with_its_runs_and_the_core_count():
    text = bench.markdown(RESULTS)
    assert text.startswith("Medians on a 2-core machine.")
    assert "| `make test` (lint and every test) (1 run) | 612 s |" in text
    assert "| ETL rows/s at 1,000,000 rows (3 runs) | 58,971 |" in text
    assert "| CLI start-up (`mlops --help`) (5 runs) | 0.048 s |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 5 + 3 + 1  # header, five timings, three ETL sizes, make test


def test_an_unmeasured_make_test_says_so_instead_of_a_number():
    text = bench.markdown({**RESULTS, "make_test_s": None})
    assert "not measured (--make-test-runs 0)" in text


def test_a_figure_outside_the_list_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unexpected \['training_s'\]"):
        bench.write_results({**RESULTS, "training_s": 1.2}, tmp_path)
    assert not (tmp_path / "results.json").exists()


def test_a_missing_figure_is_refused_by_name(tmp_path):
    results = {k: v for k, v in RESULTS.items() if k != "overhead_s"}
    with pytest.raises(ValueError, match=r"missing \['overhead_s'\]"):
        bench.write_results(results, tmp_path)


def test_runs_come_from_flags_or_the_environment_and_default_per_figure():
    assert bench.parse_args([], {}).runs is None  # each group's default from RUNS
    assert bench.parse_args([], {}).make_test_runs == bench.RUNS["make_test"]
    args = bench.parse_args([], {"BENCH_RUNS": "2", "BENCH_MAKE_TEST_RUNS": "0"})
    assert (args.runs, args.make_test_runs) == (2, 0)
    args = bench.parse_args(["--runs", "1", "--make-test-runs", "3"], {"BENCH_RUNS": "2"})
    assert (args.runs, args.make_test_runs) == (1, 3)


@pytest.mark.parametrize("argv", [["--runs", "0"], ["--runs", "-1"], ["--make-test-runs", "x"]])
def test_bad_run_counts_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as info:
        bench.parse_args(argv, {})
    assert info.value.code == 2
    assert "runs" in capsys.readouterr().err


def test_zero_make_test_runs_measure_nothing():
    assert bench.make_test_figure(0) is None
