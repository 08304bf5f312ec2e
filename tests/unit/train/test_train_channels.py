"""Reading channel directories laid out the way Spark writes them and SageMaker copies them."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from train.channels import data_files, read_channel
from train.model import TrainingDataError

ROWS = pd.DataFrame(
    {"mean_radius": [12.5, 20.1, 13.0, 11.2], "diagnosis": ["benign", "malignant", "benign", "b"]}
)


def spark_channel(root: Path, parts: list[pd.DataFrame]) -> Path:
    """A directory like Spark's CSV output: part files, their .crc twins and _SUCCESS."""
    root.mkdir(parents=True)
    for i, part in enumerate(parts):
        name = f"part-{i:05d}-3f1c.c000.csv"
        part.to_csv(root / name, index=False)
        (root / f".{name}.crc").write_bytes(b"crc\x00\x01")
    (root / "_SUCCESS").write_text("")
    (root / "._SUCCESS.crc").write_bytes(b"crc")
    return root


def test_part_files_are_concatenated_in_name_order_and_bookkeeping_is_skipped(tmp_path):
    channel = spark_channel(tmp_path / "train", [ROWS.iloc[:2], ROWS.iloc[2:]])
    (channel / "_committed_8911").write_text("{}")
    frame = read_channel(channel, "train")
    pd.testing.assert_frame_equal(frame, ROWS)
    assert [p.name for p in data_files(channel)] == [
        "part-00000-3f1c.c000.csv",
        "part-00001-3f1c.c000.csv",
    ]


def test_part_files_in_subdirectories_are_read(tmp_path):
    channel = tmp_path / "test"
    spark_channel(channel / "batch=1", [ROWS.iloc[:1]])
    spark_channel(channel / "batch=2", [ROWS.iloc[1:]])
    assert len(read_channel(channel, "test")) == len(ROWS)


def test_hidden_and_underscore_directories_are_skipped(tmp_path):
    channel = spark_channel(tmp_path / "train", [ROWS])
    spark_channel(channel / "_temporary" / "0", [ROWS])
    spark_channel(channel / ".staging", [ROWS])
    assert len(read_channel(channel, "train")) == len(ROWS)


def test_empty_part_files_from_empty_partitions_are_skipped(tmp_path):
    channel = spark_channel(tmp_path / "train", [ROWS])
    (channel / "part-00001-3f1c.c000.csv").write_text("")
    pd.testing.assert_frame_equal(read_channel(channel, "train"), ROWS)


def test_gzipped_csv_parts_are_read(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "part-00000.csv.gz").write_bytes(gzip.compress(ROWS.to_csv(index=False).encode()))
    pd.testing.assert_frame_equal(read_channel(channel, "train"), ROWS)


def test_parquet_parts_are_read(tmp_path):
    # exc_type: an installed pyarrow built for another NumPy raises ImportError, not NotFound.
    pytest.importorskip("pyarrow", reason="needs a working pyarrow", exc_type=ImportError)
    channel = tmp_path / "train"
    channel.mkdir()
    ROWS.iloc[:2].to_parquet(channel / "part-00000-3f1c.c000.snappy.parquet")
    ROWS.iloc[2:].to_parquet(channel / "part-00001-3f1c.c000.snappy.parquet")
    (channel / "_SUCCESS").write_text("")
    pd.testing.assert_frame_equal(read_channel(channel, "train"), ROWS)


def test_a_missing_channel_directory_names_the_channel(tmp_path):
    with pytest.raises(TrainingDataError) as info:
        read_channel(tmp_path / "validation", "validation")
    assert str(info.value) == (
        f"channel 'validation': directory {tmp_path / 'validation'} does not exist; give the "
        "training job an input channel named 'validation'"
    )


def test_a_channel_with_only_bookkeeping_files_is_empty(tmp_path):
    channel = spark_channel(tmp_path / "test", [])
    with pytest.raises(TrainingDataError) as info:
        read_channel(channel, "test")
    assert str(info.value) == (
        f"channel 'test': {channel} holds no CSV or Parquet files (found ['._SUCCESS.crc', "
        "'_SUCCESS']); check that the ETL wrote this split"
    )


def test_a_channel_whose_files_hold_only_headers_has_no_rows(tmp_path):
    channel = spark_channel(tmp_path / "test", [ROWS.iloc[:0], ROWS.iloc[:0]])
    with pytest.raises(TrainingDataError, match=r"channel 'test': .* has no data rows in 2 file"):
        read_channel(channel, "test")


def test_an_unexpected_file_is_an_error_not_silently_skipped(tmp_path):
    channel = spark_channel(tmp_path / "train", [ROWS])
    (channel / "rows.json").write_text("[]")
    with pytest.raises(TrainingDataError, match=r"rows\.json is neither CSV .* nor Parquet"):
        read_channel(channel, "train")


def test_parts_with_different_columns_are_an_error(tmp_path):
    channel = spark_channel(tmp_path / "train", [ROWS, ROWS.rename(columns={"diagnosis": "y"})])
    with pytest.raises(TrainingDataError) as info:
        read_channel(channel, "train")
    assert str(info.value) == (
        "channel 'train': part-00001-3f1c.c000.csv has columns ['mean_radius', 'y'] but "
        "part-00000-3f1c.c000.csv has ['mean_radius', 'diagnosis']; a channel must hold one schema"
    )
