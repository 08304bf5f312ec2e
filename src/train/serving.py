"""Decode endpoint requests and encode responses; pure functions of strings and bytes.

The SageMaker scikit-learn container calls `input_fn(body, content_type)` without the model, so
decoding keeps the column names a request gave (CSV header, JSON object keys) and `align` matches
them against the model's features once the model is at hand, in `predict_fn`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

if __package__:  # imported as the `train` package (tests, local tools)
    from .model import Prediction, PredictionInputError
else:  # run as a script by the SageMaker container: its directory is on sys.path
    from model import Prediction, PredictionInputError

CSV = "text/csv"
JSON = "application/json"
CONTENT_TYPES = (CSV, JSON)


class UnsupportedContentTypeError(PredictionInputError):
    """The request's Content-Type or Accept header names a format this endpoint does not speak."""


@dataclass(frozen=True)
class PredictionRequest:
    rows: list[list[Any]]
    columns: list[str] | None = None  # the names the request gave, if any


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or value is None:
        raise PredictionInputError(f"{where}: {value!r} is not a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise PredictionInputError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise PredictionInputError(f"{where}: {value!r} is not a finite number")
    return number


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _decode_csv(text: str) -> PredictionRequest:
    rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text)) if row]
    rows = [row for row in rows if any(row)]
    if not rows:
        raise PredictionInputError("the CSV request has no rows")
    # A first row with a non-numeric cell is a header naming the features (an empty cell is a
    # missing value, reported as such by align).
    if any(cell and not _is_number(cell) for cell in rows[0]):
        return PredictionRequest(rows=rows[1:], columns=rows[0])
    return PredictionRequest(rows=rows)


def _decode_json(text: str) -> PredictionRequest:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PredictionInputError(f"the JSON request is not valid JSON: {exc}") from None
    instances = payload.get("instances") if isinstance(payload, dict) else payload
    shape_hint = 'send {"instances": [{"feature": value, ...}, ...]} or [[value, ...], ...]'
    if not isinstance(instances, list) or not instances:
        raise PredictionInputError(f"the JSON request has no rows; {shape_hint}")
    if all(isinstance(i, dict) for i in instances):
        columns = [str(k) for k in instances[0]]
        rows = []
        for n, instance in enumerate(instances):
            if set(instance) != set(columns):
                raise PredictionInputError(
                    f"instance {n} has keys {sorted(instance)} but instance 0 has "
                    f"{sorted(columns)}; every instance must name the same features"
                )
            rows.append([instance[c] for c in columns])
        return PredictionRequest(rows=rows, columns=columns)
    if all(isinstance(i, list) for i in instances):
        return PredictionRequest(rows=[list(i) for i in instances])
    raise PredictionInputError(
        f"every instance must be an object or a list of values; {shape_hint}"
    )


def decode_request(body: bytes | str, content_type: str | None) -> PredictionRequest:
    """Parse a text/csv or application/json request body."""
    media = _media_type(content_type)
    if media not in CONTENT_TYPES:
        raise UnsupportedContentTypeError(
            f"content type {content_type!r} is not supported; send {' or '.join(CONTENT_TYPES)}"
        )
    if isinstance(body, (bytes, bytearray)):  # noqa: UP038 (the container runs Python 3.9)
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PredictionInputError(f"the request body is not UTF-8 text: {exc}") from None
    return _decode_csv(body) if media == CSV else _decode_json(body)


def align(request: PredictionRequest, feature_columns: Sequence[str]) -> list[list[float]]:
    """The request's rows as numbers in the model's feature order."""
    features = list(feature_columns)
    if not request.rows:
        raise PredictionInputError("the request has no rows, only a header")
    if request.columns is None:
        order = list(range(len(features)))
    else:
        given = request.columns
        missing = [f for f in features if f not in given]
        extra = [c for c in given if c not in features]
        if missing or extra or len(given) != len(features):
            raise PredictionInputError(
                f"the request names columns {given} but the model takes {features}"
                f"{f'; missing {missing}' if missing else ''}{f'; unknown {extra}' if extra else ''}"
                " (a CSV first row with a non-numeric value is read as a header)"
            )
        order = [given.index(f) for f in features]
    aligned = []
    for n, row in enumerate(request.rows):
        if len(row) != len(order):
            raise PredictionInputError(
                f"row {n} has {len(row)} values but the model takes {len(features)} features "
                f"in this order: {', '.join(features)}"
            )
        aligned.append(
            [
                _number(row[order[j]], f"row {n}, feature {name!r}")
                for j, name in enumerate(features)
            ]
        )
    return aligned


def encode_predictions(predictions: Sequence[Prediction], accept: str | None) -> tuple[str, str]:
    """The JSON response body and its content type.

    Returns a (body, content type) tuple, which the SageMaker inference toolkits turn into the
    HTTP response.
    """
    accepted = [_media_type(part) for part in (accept or "").split(",")]
    if not any(a in ("", "*/*", "application/*", JSON) for a in accepted):
        raise UnsupportedContentTypeError(
            f"accept type {accept!r} is not supported; this endpoint answers {JSON}"
        )
    body = {
        "predictions": [{"label": p.label, "probabilities": p.probabilities} for p in predictions]
    }
    return json.dumps(body), JSON
