"""Decoding endpoint requests (text/csv, application/json) and encoding the JSON response."""

from __future__ import annotations

import json

import pytest

from train.model import Prediction, PredictionInputError
from train.serving import (
    PredictionRequest,
    UnsupportedContentTypeError,
    align,
    decode_request,
    encode_predictions,
)

FEATURES = ["radius", "texture", "area"]


def rows_of(body, content_type, features=FEATURES):
    return align(decode_request(body, content_type), features)


# --- text/csv ---------------------------------------------------------------------------------


def test_csv_without_header_is_read_in_feature_order():
    assert rows_of("1,2,3\n4,5.5,-6e-1\n", "text/csv") == [[1.0, 2.0, 3.0], [4.0, 5.5, -0.6]]


def test_csv_header_in_another_order_is_matched_by_name():
    body = "area,radius,texture\n3,1,2\n"
    assert rows_of(body, "text/csv") == [[1.0, 2.0, 3.0]]


def test_csv_bytes_with_a_charset_and_blank_lines_are_accepted():
    body = b"radius,texture,area\r\n1,2,3\r\n\r\n4,5,6\r\n"
    assert rows_of(body, "text/csv; charset=utf-8") == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def test_csv_header_naming_other_columns_is_rejected_with_both_lists():
    with pytest.raises(PredictionInputError) as info:
        rows_of("radius,texture,perimeter\n1,2,3\n", "text/csv")
    assert str(info.value) == (
        "the request names columns ['radius', 'texture', 'perimeter'] but the model takes "
        "['radius', 'texture', 'area']; missing ['area']; unknown ['perimeter'] (a CSV first "
        "row with a non-numeric value is read as a header)"
    )


def test_csv_row_with_the_wrong_number_of_values_is_rejected():
    with pytest.raises(PredictionInputError) as info:
        rows_of("1,2,3\n4,5\n", "text/csv")
    assert str(info.value) == (
        "row 1 has 2 values but the model takes 3 features in this order: radius, texture, area"
    )


def test_csv_non_numeric_value_is_rejected_naming_row_and_feature():
    with pytest.raises(PredictionInputError, match="row 0, feature 'texture': 'twelve' is not"):
        rows_of("radius,texture,area\n1,twelve,3\n", "text/csv")


def test_csv_empty_value_is_rejected():
    with pytest.raises(PredictionInputError, match="row 0, feature 'texture': '' is not a number"):
        rows_of("1,,3\n", "text/csv")


@pytest.mark.parametrize("body", ["", "\n\n", "radius,texture,area\n"])
def test_csv_without_data_rows_is_rejected(body):
    with pytest.raises(PredictionInputError, match="no rows"):
        rows_of(body, "text/csv")


# --- application/json -------------------------------------------------------------------------


def test_json_instances_are_matched_by_name_whatever_the_key_order():
    body = json.dumps(
        {
            "instances": [
                {"radius": 1, "texture": 2, "area": 3},
                {"area": 6, "texture": 5, "radius": 4},
            ]
        }
    )
    assert rows_of(body, "application/json") == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def test_json_list_of_lists_is_read_in_feature_order():
    assert rows_of("[[1, 2, 3], [4, 5, 6]]", "application/json") == [
        [1.0, 2.0, 3.0],
        [4.0, 5.0, 6.0],
    ]


def test_json_instances_may_be_lists_too():
    assert rows_of('{"instances": [[1, 2, 3]]}', "application/json") == [[1.0, 2.0, 3.0]]


def test_json_instances_with_different_keys_are_rejected():
    body = json.dumps({"instances": [{"radius": 1, "texture": 2, "area": 3}, {"radius": 1}]})
    with pytest.raises(PredictionInputError, match="instance 1 has keys"):
        rows_of(body, "application/json")


def test_json_instances_missing_a_feature_are_rejected():
    with pytest.raises(PredictionInputError, match=r"missing \['area'\]"):
        rows_of('{"instances": [{"radius": 1, "texture": 2}]}', "application/json")


def test_json_list_rows_of_the_wrong_length_are_rejected():
    with pytest.raises(PredictionInputError, match="row 0 has 4 values but the model takes 3"):
        rows_of("[[1, 2, 3, 4]]", "application/json")


@pytest.mark.parametrize("value", ["true", "null", '"wide"', "[1]"])
def test_json_values_that_are_not_numbers_are_rejected(value):
    body = f'{{"instances": [{{"radius": 1, "texture": {value}, "area": 3}}]}}'
    with pytest.raises(PredictionInputError, match="row 0, feature 'texture'"):
        rows_of(body, "application/json")


@pytest.mark.parametrize(
    "body",
    ['{"instances": []}', "[]", '{"rows": [[1, 2, 3]]}', "[1, 2, 3]", '[{"radius": 1}, [1]]'],
)
def test_json_of_another_shape_is_rejected_with_the_expected_shape(body):
    with pytest.raises(PredictionInputError, match=r'send \{"instances": '):
        rows_of(body, "application/json")


def test_invalid_json_is_rejected():
    with pytest.raises(PredictionInputError, match="not valid JSON"):
        rows_of("{instances: [[1, 2, 3]]}", "application/json")


def test_a_body_that_is_not_utf8_is_rejected():
    with pytest.raises(PredictionInputError, match="not UTF-8"):
        rows_of(b"\xff\xfe1,2,3", "text/csv")


# --- content types ----------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/x-npy", "text/plain", None, ""])
def test_an_unsupported_content_type_is_a_value_error_naming_the_supported_ones(content_type):
    with pytest.raises(UnsupportedContentTypeError) as info:
        decode_request("1,2,3", content_type)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == (
        f"content type {content_type!r} is not supported; send text/csv or application/json"
    )


def test_the_request_keeps_the_names_it_was_given():
    assert decode_request("radius,area\n1,2\n", "text/csv") == PredictionRequest(
        rows=[["1", "2"]], columns=["radius", "area"]
    )


# --- response ---------------------------------------------------------------------------------

PREDICTIONS = [
    Prediction("malignant", {"benign": 0.25, "malignant": 0.75}),
    Prediction("benign", {"benign": 1.0, "malignant": 0.0}),
]


@pytest.mark.parametrize(
    "accept",
    [None, "", "*/*", "application/json", "application/json; charset=utf-8", "text/html, */*"],
)
def test_the_response_is_json_with_a_label_and_probabilities_per_row(accept):
    body, content_type = encode_predictions(PREDICTIONS, accept)
    assert content_type == "application/json"
    assert json.loads(body) == {
        "predictions": [
            {"label": "malignant", "probabilities": {"benign": 0.25, "malignant": 0.75}},
            {"label": "benign", "probabilities": {"benign": 1.0, "malignant": 0.0}},
        ]
    }


def test_an_unsupported_accept_type_is_rejected():
    with pytest.raises(UnsupportedContentTypeError) as info:
        encode_predictions(PREDICTIONS, "text/csv")
    assert str(info.value) == (
        "accept type 'text/csv' is not supported; this endpoint answers application/json"
    )


# --- the request fixtures ---------------------------------------------------------------------


def test_the_csv_and_json_request_fixtures_carry_the_same_rows(fixtures_dir, features):
    csv_rows = rows_of((fixtures_dir / "request_rows.csv").read_bytes(), "text/csv", features)
    json_rows = rows_of(
        (fixtures_dir / "request_instances.json").read_bytes(), "application/json", features
    )
    assert csv_rows == json_rows
    assert csv_rows[0][:2] == [19.81, 22.15]
