"""Read a SageMaker input channel directory into one pandas frame.

SageMaker copies the S3 prefix of each channel to /opt/ml/input/data/<channel>/. The ETL writes
those prefixes with Spark, so a channel holds part files (CSV with a header, or Parquet) next to
Spark's bookkeeping: `_SUCCESS`, `_committed_*`, and `.part-*.crc` checksums, all skipped here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

if __package__:  # imported as the `train` package (tests, local tools)
    from .model import TrainingDataError
else:  # run as a script by the SageMaker container: its directory is on sys.path
    from model import TrainingDataError

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet",)


def _is_bookkeeping(relative: Path) -> bool:
    # Hadoop and Spark treat names starting with "_" or "." as metadata, not data.
    return any(part.startswith(("_", ".")) for part in relative.parts) or relative.name.endswith(
        ".crc"
    )


def data_files(channel_dir: Path) -> list[Path]:
    """The data files under `channel_dir` (recursively), sorted so reads are reproducible."""
    files = []
    for path in sorted(p for p in channel_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(channel_dir)
        if _is_bookkeeping(relative):
            continue
        if not path.name.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES):
            raise TrainingDataError(
                f"{path} is neither CSV ({', '.join(CSV_SUFFIXES)}) nor Parquet "
                f"({', '.join(PARQUET_SUFFIXES)}); remove it from the channel's S3 prefix"
            )
        files.append(path)
    return files


def _read_file(path: Path) -> pd.DataFrame | None:
    if path.name.endswith(PARQUET_SUFFIXES):
        try:
            return pd.read_parquet(path)
        except ImportError as exc:
            # The SageMaker scikit-learn image does not ship a Parquet engine.
            raise TrainingDataError(
                f"{path} is Parquet but no Parquet engine can be imported ({exc}); write the "
                "ETL output as CSV (data.output_format: csv) or add pyarrow to requirements.txt"
            ) from None
    if path.stat().st_size == 0:
        return None  # Spark writes an empty part file for an empty partition
    return pd.read_csv(path)


def read_channel(channel_dir: Path | str, name: str) -> pd.DataFrame:
    """All rows of channel `name`; an absent, empty or inconsistent channel is a TrainingDataError."""
    root = Path(channel_dir)
    if not root.is_dir():
        raise TrainingDataError(
            f"channel {name!r}: directory {root} does not exist; give the training job an input "
            f"channel named {name!r}"
        )
    files = data_files(root)
    if not files:
        found = sorted(p.name for p in root.rglob("*") if p.is_file())
        raise TrainingDataError(
            f"channel {name!r}: {root} holds no CSV or Parquet files (found {found or 'nothing'}); "
            "check that the ETL wrote this split"
        )
    frames: list[pd.DataFrame] = []
    columns: list[str] | None = None
    first: Path | None = None
    for path in files:
        frame = _read_file(path)
        if frame is None:
            continue
        if columns is None:
            columns, first = list(frame.columns), path
        elif list(frame.columns) != columns:
            raise TrainingDataError(
                f"channel {name!r}: {path.name} has columns {list(frame.columns)} but "
                f"{first.name if first else '?'} has {columns}; a channel must hold one schema"
            )
        frames.append(frame)
    if not frames or sum(len(f) for f in frames) == 0:
        raise TrainingDataError(
            f"channel {name!r}: {root} has no data rows in {len(files)} file(s); "
            "check that the ETL wrote rows to this split"
        )
    return pd.concat(frames, ignore_index=True)
