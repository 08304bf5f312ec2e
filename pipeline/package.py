"""Deterministic code bundles for the three AWS runtimes, named by their content.

- Lambda: one zip of the `lambdas` package (src/lambdas/), handler `lambdas.<module>.handler`.
- SageMaker: a tar.gz of src/train/ with its files at the root (sagemaker_submit_directory;
  the container runs `python entry.py` there).
- Glue: the job script src/etl/glue_job.py plus a zip of the `etl` package for
  `--extra-py-files`.

Bundles are byte-identical for identical sources (sorted entries, fixed timestamps
and permissions), so their S3 keys can carry a content hash and an unchanged bundle
is never uploaded twice.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
FIXED_EPOCH = 1577836800
CODE_PREFIX = "code/"


@dataclass(frozen=True)
class Bundle:
    name: str  # lambdas | train | etl | etl-script
    filename: str  # how it is stored, e.g. lambdas-<hash>.zip
    body: bytes

    @property
    def key(self) -> str:
        return CODE_PREFIX + self.filename


def _sources(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:12]


def _zip(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buf.getvalue()


def _tar_gz(files: list[tuple[str, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = FIXED_EPOCH
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _package_files(package: str, src: Path = SRC) -> list[tuple[str, bytes]]:
    root = src / package
    return [(f"{package}/{p.relative_to(root).as_posix()}", p.read_bytes()) for p in _sources(root)]


def lambda_bundle(src: Path = SRC) -> Bundle:
    body = _zip(_package_files("lambdas", src))
    return Bundle("lambdas", f"lambdas-{_digest(body)}.zip", body)


def training_bundle(src: Path = SRC) -> Bundle:
    root = src / "train"
    body = _tar_gz([(p.relative_to(root).as_posix(), p.read_bytes()) for p in _sources(root)])
    return Bundle("train", f"train-{_digest(body)}.tar.gz", body)


def etl_bundles(src: Path = SRC) -> tuple[Bundle, Bundle]:
    """(the job script, the `etl` package zip for --extra-py-files)."""
    script = (src / "etl" / "glue_job.py").read_bytes()
    library = _zip(_package_files("etl", src))
    return (
        Bundle("etl-script", f"etl-{_digest(script)}/glue_job.py", script),
        Bundle("etl", f"etl-{_digest(library)}.zip", library),
    )


def all_bundles(src: Path = SRC) -> dict[str, Bundle]:
    script, library = etl_bundles(src)
    bundles = [lambda_bundle(src), training_bundle(src), script, library]
    return {b.name: b for b in bundles}
