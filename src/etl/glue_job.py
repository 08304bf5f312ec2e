"""Glue entry of the ETL: parse the job arguments, read the input, run the transforms, write.

Run by Glue as a script file (with the `etl` package on the path, e.g. via --extra-py-files), or
locally as `python src/etl/glue_job.py --input ... --output ...`.

Arguments, Glue style (`--key value`; unknown keys such as --JOB_NAME or --TempDir are ignored):
  --input                s3://bucket/prefix or a local path (a folder of data files, or one file)
  --output               s3://bucket/prefix or a local folder
  --label_column         the class column
  --feature_columns      comma-separated feature columns, in the order the model will see them
  --input_format         csv | parquet                                    (default csv)
  --output_format        csv | parquet                                    (default csv)
  --validation_fraction  share of each class for validation               (default 0.15)
  --test_fraction        share of each class for test                     (default 0.2)
  --seed                 split seed                                       (default 42)
The defaults are those of config/project.yaml; the workflow passes every value explicitly.

Output under --output: train/, validation/ and test/, each holding one data file (part-*.csv with
a header row, or part-*.parquet), and report.json (see transforms.build_report), written last.

On Glue (awsglue importable), Spark reads and writes s3:// natively. Elsewhere local Spark has no
S3 connector, so s3:// input is downloaded with boto3 to a temporary folder and the output uploaded
from one; boto3 honours AWS_ENDPOINT_URL, which is how this runs against a local moto server.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from etl.errors import EmptyInputError, JobArgumentError
from etl.transforms import EtlResult, SplitSpec, prepare

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("etl")

REQUIRED = ("input", "output", "label_column", "feature_columns")
DEFAULTS = {
    "input_format": "csv",
    "output_format": "csv",
    "validation_fraction": "0.15",
    "test_fraction": "0.2",
    "seed": "42",
}
FORMATS = ("csv", "parquet")
REPORT = "report.json"
# Hadoop writes this marker next to the data; the layout promises one data file per split.
_NO_SUCCESS_MARKER = {"mapreduce.fileoutputcommitter.marksuccessfuljobs": "false"}


@dataclass(frozen=True)
class JobArgs:
    input: str
    output: str
    input_format: str
    output_format: str
    spec: SplitSpec


# ---------------------------------------------------------------- arguments


class _ArgumentParser(argparse.ArgumentParser):
    # Like awsglue's GlueArgumentParser: raise instead of sys.exit so the error is reported.
    def error(self, message: str) -> None:  # type: ignore[override]
        raise JobArgumentError(f"{message}; pass job arguments as --key value")


def _resolve_fallback(argv: list[str], keys: list[str]) -> dict[str, str]:
    """getResolvedOptions' behaviour without awsglue: every key required, unknown keys ignored."""
    parser = _ArgumentParser(add_help=False, allow_abbrev=False)
    for key in keys:
        parser.add_argument(f"--{key}", required=True)
    parsed, _unknown = parser.parse_known_args(argv)
    return vars(parsed)


def resolve_options(argv: list[str], keys: list[str]) -> dict[str, str]:
    """Resolve `keys` from Glue-style argv (without the program name)."""
    if glue_available():
        from awsglue.utils import getResolvedOptions

        return getResolvedOptions([sys.argv[0], *argv], keys)
    return _resolve_fallback(argv, keys)


def _given(argv: list[str], key: str) -> bool:
    return any(arg == f"--{key}" or arg.startswith(f"--{key}=") for arg in argv)


def parse_job_args(argv: list[str]) -> JobArgs:
    # getResolvedOptions has no optional keys: ask only for the optional ones that were passed.
    keys = [*REQUIRED, *[key for key in DEFAULTS if _given(argv, key)]]
    values = {**DEFAULTS, **resolve_options(argv, keys)}
    for key in ("input_format", "output_format"):
        if values[key] not in FORMATS:
            raise JobArgumentError(f"--{key} is {values[key]!r}; use one of {list(FORMATS)}")
    try:
        validation, test = float(values["validation_fraction"]), float(values["test_fraction"])
        seed = int(values["seed"])
    except ValueError as exc:
        raise JobArgumentError(
            f"{exc}; --validation_fraction and --test_fraction take numbers, --seed an integer"
        ) from None
    features = tuple(name.strip() for name in values["feature_columns"].split(",") if name.strip())
    spec = SplitSpec(values["label_column"].strip(), features, validation, test, seed)
    return JobArgs(
        values["input"], values["output"], values["input_format"], values["output_format"], spec
    )


# ---------------------------------------------------------------- Spark


def glue_available() -> bool:
    return importlib.util.find_spec("awsglue") is not None


def local_spark(app_name: str = "etl") -> SparkSession:
    """A local SparkSession tuned for start-up time: the whole job runs in a few seconds."""
    # Binding to loopback skips the host-name lookup (and its warning) on machines without DNS.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        # Adaptive execution splits every shuffle into jobs of its own (13 jobs instead of 6
        # here, about 2 s); on a few thousand rows it has nothing to adapt.
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        # C1 JIT only: the optimising tier never pays off in a job of seconds (about 1 s saved).
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _session(on_glue: bool) -> tuple[SparkSession, bool]:
    """The session to use and whether this job owns it (and so stops it)."""
    from pyspark.sql import SparkSession

    if on_glue:
        return SparkSession.builder.getOrCreate(), False
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    return local_spark(), True


def read_frame(spark: SparkSession, paths: list[str], input_format: str) -> DataFrame:
    if input_format == "parquet":
        return spark.read.parquet(*paths)
    # Every column as text: the transforms type-check the features themselves. enforceSchema off:
    # a file whose header orders columns differently fails instead of shifting values silently.
    return spark.read.options(header=True, enforceSchema=False).csv(paths)


def _write(frame: DataFrame, path: str, output_format: str) -> None:
    writer = frame.write.mode("overwrite").options(**_NO_SUCCESS_MARKER)
    if output_format == "parquet":
        writer.parquet(path)
    else:
        writer.option("header", True).csv(path)


# ---------------------------------------------------------------- storage


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """("bucket", "key/prefix") of s3://bucket/key/prefix, without a trailing slash."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise JobArgumentError(f"{uri!r} names no bucket; use s3://bucket/prefix")
    return bucket, key.strip("/")


def _join_key(*parts: str) -> str:
    return "/".join(part.strip("/") for part in parts if part.strip("/"))


def is_data_file(relative_path: str, size: int) -> bool:
    """Whether a file under the input holds data: not a marker, checksum, hidden or empty file.

    Empty files are skipped too: a zero-byte "folder" key holds nothing, and a zero-byte Parquet
    file is not valid Parquet.
    """
    parts = PurePosixPath(relative_path).parts
    if size == 0 or not parts or relative_path.endswith("/"):
        return False
    return not any(part.startswith((".", "_")) for part in parts) and not parts[-1].endswith(".crc")


def _s3_client(s3: Any = None) -> Any:
    if s3 is not None:
        return s3
    import boto3

    return boto3.client("s3")


def _list_s3(s3: Any, bucket: str, prefix: str) -> list[tuple[str, int]]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [(obj["Key"], obj["Size"]) for page in pages for obj in page.get("Contents", [])]


def list_s3_input(s3: Any, uri: str) -> list[str]:
    """Keys of the data files under an s3:// prefix, or the one object the URI names."""
    bucket, key = split_s3_uri(uri)
    folder = f"{key}/" if key else ""
    found = [k for k, size in _list_s3(s3, bucket, folder) if is_data_file(k[len(folder) :], size)]
    if not found and key:
        found = [k for k, size in _list_s3(s3, bucket, key) if k == key and size > 0]
    if not found:
        raise EmptyInputError(
            f"no data files under {uri}; put CSV or Parquet files there (_SUCCESS, .crc, hidden "
            "and empty files are ignored) or fix --input"
        )
    return sorted(found)


def list_local_input(path: str) -> list[str]:
    root = Path(path)
    if root.is_file():
        return [str(root)]
    found = (
        sorted(
            str(p)
            for p in root.rglob("*")
            if p.is_file() and is_data_file(p.relative_to(root).as_posix(), p.stat().st_size)
        )
        if root.is_dir()
        else []
    )
    if not found:
        raise EmptyInputError(
            f"no data files under {path}; put CSV or Parquet files there (_SUCCESS, .crc, hidden "
            "and empty files are ignored) or fix --input"
        )
    return found


def stage_input(uri: str, scratch: Path, native_s3: bool, s3: Any = None) -> list[str]:
    """Paths Spark can read for the input: s3:// URIs on Glue, else local files."""
    if not is_s3(uri):
        return list_local_input(uri)
    s3 = _s3_client(s3)
    bucket, key = split_s3_uri(uri)
    keys = list_s3_input(s3, uri)
    if native_s3:
        return [f"s3://{bucket}/{k}" for k in keys]
    paths = []
    for k in keys:
        # Keep the relative layout: two folders may hold files of the same name.
        target = scratch / (k[len(key) :].strip("/") or PurePosixPath(k).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, k, str(target))
        paths.append(str(target))
    log.info("staged %d file(s) from %s", len(paths), uri)
    return paths


def _single_data_file(folder: Path) -> Path:
    files = [p for p in folder.iterdir() if p.name.startswith("part-") and p.suffix != ".crc"]
    if len(files) != 1:
        raise RuntimeError(f"expected one data file in {folder}, found {[p.name for p in files]}")
    return files[0]


def write_outputs(
    result: EtlResult, args: JobArgs, scratch: Path, native_s3: bool, s3: Any = None
) -> None:
    """Write the three splits, then report.json (last: its presence marks a complete output)."""
    report = json.dumps(result.report, indent=2, sort_keys=True) + "\n"
    if is_s3(args.output) and native_s3:
        for name, frame in result.splits.items():
            _write(frame, f"{args.output.rstrip('/')}/{name}", args.output_format)
        bucket, prefix = split_s3_uri(args.output)
        _s3_client(s3).put_object(
            Bucket=bucket, Key=_join_key(prefix, REPORT), Body=report.encode()
        )
        return
    # Spark writes into a scratch folder first: its checksum files and temporary folders never
    # reach the output, which then holds exactly one data file per split.
    written = {}
    for name, frame in result.splits.items():
        _write(frame, str(scratch / name), args.output_format)
        written[name] = _single_data_file(scratch / name)
    if is_s3(args.output):
        _publish_s3(_s3_client(s3), args.output, written, report)
    else:
        _publish_local(Path(args.output), written, report)


def _publish_local(output: Path, written: dict[str, Path], report: str) -> None:
    output.mkdir(parents=True, exist_ok=True)
    for name, data_file in written.items():
        folder = output / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        shutil.move(data_file, folder / data_file.name)
    (output / REPORT).write_text(report)


def _publish_s3(s3: Any, uri: str, written: dict[str, Path], report: str) -> None:
    bucket, prefix = split_s3_uri(uri)
    for name, data_file in written.items():
        # Replace, as Spark's overwrite mode would: a stale part file would be read as data.
        stale = [k for k, _ in _list_s3(s3, bucket, _join_key(prefix, name) + "/")]
        for start in range(0, len(stale), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": k} for k in stale[start : start + 1000]]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        s3.upload_file(str(data_file), bucket, _join_key(prefix, name, data_file.name))
    s3.put_object(Bucket=bucket, Key=_join_key(prefix, REPORT), Body=report.encode())


# ---------------------------------------------------------------- entry


def run(
    spark: SparkSession,
    args: JobArgs,
    paths: list[str],
    scratch: Path,
    native_s3: bool,
    s3: Any = None,
) -> dict[str, Any]:
    """Transform the staged input files and write the outputs; returns the report."""
    result = prepare(read_frame(spark, paths, args.input_format), args.spec)
    try:
        write_outputs(result, args, scratch, native_s3, s3)
    finally:
        result.unpersist()
    log.info("wrote %s rows to %s", result.report["output_rows"], args.output)
    return result.report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the job; returns the report. Bad data raises an EtlError subclass."""
    args = parse_job_args(sys.argv[1:] if argv is None else list(argv))
    on_glue = glue_available()
    with tempfile.TemporaryDirectory(prefix="etl-") as scratch:
        # Input first: a missing input fails in a second, before Spark starts.
        paths = stage_input(args.input, Path(scratch, "input"), native_s3=on_glue)
        spark, owned = _session(on_glue)
        try:
            return run(spark, args, paths, Path(scratch, "output"), native_s3=on_glue)
        finally:
            # Stopped before the error reaches the top, so no JVM shutdown log follows its line.
            if owned:
                spark.stop()


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    traceback.print_exception(exc_type, exc, tb)
    # The traceback's last line qualifies the class with its module (etl.errors.X); the contract
    # for the last line, like Glue's ErrorMessage, uses the bare class name, on one line.
    print(f"{exc_type.__name__}: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    # INFO for this job's own lines only: py4j logs at INFO while the interpreter exits.
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    sys.excepthook = _excepthook
    print(json.dumps(main(), sort_keys=True))
