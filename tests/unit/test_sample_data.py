from __future__ import annotations

import csv
from pathlib import Path

from pipeline.sample_data import DROPS, write_sample_data

REPO = Path(__file__).resolve().parents[2]


def test_committed_sample_data_is_what_the_generator_writes(tmp_path: Path):
    for path in write_sample_data(tmp_path):
        committed = REPO / "data" / "sample" / path.relative_to(tmp_path)
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale: regenerate it"


def test_corrupt_drop_has_non_numeric_features_and_clean_drops_do_not(tmp_path: Path):
    write_sample_data(tmp_path)
    for name in DROPS:
        with (tmp_path / name / "data.csv").open() as fh:
            radii = [row["mean_radius"] for row in csv.DictReader(fh)]
        bad = [r for r in radii if r and not r.replace(".", "", 1).replace("e-", "").isdigit()]
        assert bool(bad) == name.endswith("corrupt"), name
