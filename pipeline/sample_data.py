"""Sample data drops, generated from the breast-cancer dataset bundled with scikit-learn.

No downloads: the dataset ships inside the scikit-learn wheel. The drops tell the
demo's story and feed the tests:

- drop-001: a small first delivery with noisy labels (the first model is modest)
- drop-002: a larger, clean delivery (a retrained model should beat the first)
- drop-003: the full, clean dataset
- drop-corrupt: a delivery whose feature column holds text that is not a number

Every drop also carries what real deliveries carry: an `id`, an unused column, a
few exact duplicates and a few rows with a missing value, so the ETL has cleaning
to report. Output is deterministic: the same call writes byte-identical files.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

# TEMPLATE: replace with your own data. Columns must match data.* in config/project.yaml.
SOURCE_COLUMNS = {
    "mean radius": "mean_radius",
    "mean texture": "mean_texture",
    "mean perimeter": "mean_perimeter",
    "mean area": "mean_area",
    "mean smoothness": "mean_smoothness",
    "mean compactness": "mean_compactness",
    "mean concavity": "mean_concavity",
    "mean concave points": "mean_concave_points",
    "mean symmetry": "mean_symmetry",
    "mean fractal dimension": "mean_fractal_dimension",
}
LABEL = "diagnosis"
DROPS = {
    # name: (fraction of rows, fraction of labels flipped, corrupt)
    "drop-001": (0.4, 0.12, False),
    "drop-002": (0.7, 0.0, False),
    "drop-003": (1.0, 0.0, False),
    "drop-corrupt": (0.5, 0.0, True),
}
SEED = 7


# TEMPLATE: read your own sample rows here (and keep a corrupt drop: the tests need one).
def _rows() -> list[dict[str, str]]:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    names = list(bunch.feature_names)
    rows = []
    for i, (values, target) in enumerate(zip(bunch.data, bunch.target, strict=True)):
        row = {"id": f"p{i:04d}", "clinic": f"c{i % 5}"}
        for source, column in SOURCE_COLUMNS.items():
            row[column] = f"{values[names.index(source)]:.6g}"
        row[LABEL] = str(bunch.target_names[target])
        rows.append(row)
    return rows


def _drop(
    rows: list[dict[str, str]], fraction: float, flip: float, corrupt: bool, rng: random.Random
):
    picked = [dict(r) for r in rng.sample(rows, round(len(rows) * fraction))]
    classes = sorted({r[LABEL] for r in rows})
    for row in rng.sample(picked, round(len(picked) * flip)):
        row[LABEL] = classes[1 - classes.index(row[LABEL])]
    for row in rng.sample(picked, 3):
        row["mean_texture"] = ""  # a missing value: the ETL drops the row and says why
    picked += [dict(r) for r in rng.sample(picked, 4)]  # exact duplicates
    if corrupt:
        for row in rng.sample(picked, 5):
            row["mean_radius"] = rng.choice(["twelve", "n/a?", "12,5mm"])
    rng.shuffle(picked)
    return picked


def write_sample_data(out_dir: Path) -> list[Path]:
    rows = _rows()
    rng = random.Random(SEED)
    columns = ["id", *SOURCE_COLUMNS.values(), "clinic", LABEL]
    written = []
    for name, (fraction, flip, corrupt) in DROPS.items():
        path = Path(out_dir) / name / "data.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(_drop(rows, fraction, flip, corrupt, rng))
        written.append(path)
    return written
