"""The pull request's job summary: this change's metrics beside the base branch's."""

from __future__ import annotations

import json

import pytest

from pipeline import cli, dryrun
from pipeline.run import RunError

HEAD = {
    "commit": "aaaaaaaaaaaa1",
    "outcome": "promoted",
    "metric": "accuracy",
    "candidate_metrics": {"accuracy": 0.9, "f1_macro": 0.85},
}
BASE = {
    "commit": "bbbbbbbbbbbb2",
    "outcome": "promoted",
    "metric": "accuracy",
    "candidate_metrics": {"accuracy": 0.8, "recall_macro": 0.7},
}


def test_comparison_shows_both_runs_and_the_change_per_metric():
    text = dryrun.comparison_markdown(HEAD, BASE, "drop-001")
    assert "| accuracy (gate metric) | 0.8000 | 0.9000 | +0.1000 |" in text
    assert "| f1_macro | — | 0.8500 | — |" in text  # only this change measures it
    assert "| recall_macro | 0.7000 | — | — |" in text
    assert "`bbbbbbbbbbbb`" in text and "`aaaaaaaaaaaa`" in text
    assert "**promoted**" in text


def test_without_a_base_the_summary_says_why_and_lists_this_change_only():
    text = dryrun.comparison_markdown(
        {**HEAD, "outcome": "failed", "failed_state": "ETL", "cause": "bad rows"}, None, "drop-001"
    )
    assert "nothing to compare with" in text
    assert "| accuracy | 0.9000 |" in text
    assert "failed in `ETL`: bad rows" in text


@pytest.mark.parametrize("content", ["not json", json.dumps([1, 2]), json.dumps({"x": 1})])
def test_a_compare_file_that_is_not_a_summary_is_refused(tmp_path, content):
    path = tmp_path / "base.json"
    path.write_text(content)
    with pytest.raises(RunError, match="not a dry-run summary"):
        dryrun.load_summary(path)


def test_cli_refuses_a_missing_drop_folder_without_starting_a_cloud(tmp_path, capsys):
    code = cli.main(["dry-run", "--data", str(tmp_path / "nope")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "Fix:" in err
