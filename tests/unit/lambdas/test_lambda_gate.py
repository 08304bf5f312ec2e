"""The promotion gate rule: first model, equal, worse, better, min_improvement, minimize, noise."""

from __future__ import annotations

import math

import pytest

from lambdas.gate import GateRule, beats, bounds, decide

# (candidate, production, direction, min_improvement, promote)
GATE_TABLE = [
    pytest.param(0.90, None, "maximize", 0.0, True, id="first-model-is-promoted"),
    pytest.param(0.40, None, "minimize", 0.1, True, id="first-model-is-promoted-minimize"),
    pytest.param(0.9123, 0.9123, "maximize", 0.0, False, id="equal-is-not-better"),
    pytest.param(0.9000, 0.9123, "maximize", 0.0, False, id="worse-is-rejected"),
    pytest.param(0.9412, 0.9123, "maximize", 0.0, True, id="better-is-promoted"),
    pytest.param(0.9150, 0.9123, "maximize", 0.005, False, id="better-but-below-min-improvement"),
    pytest.param(0.9200, 0.9100, "maximize", 0.01, True, id="better-by-exactly-min-improvement"),
    # 0.83 - 0.82 == 0.00999999999999989 in floats: the margin is met, the noise must not hide it.
    pytest.param(0.83, 0.82, "maximize", 0.01, True, id="min-improvement-met-despite-float-noise"),
    pytest.param(0.1 + 0.2, 0.3, "maximize", 0.0, False, id="float-noise-is-not-better"),
    pytest.param(0.9 + 1e-13, 0.9, "maximize", 0.0, False, id="sub-tolerance-gain-is-not-better"),
    pytest.param(0.9 + 1e-9, 0.9, "maximize", 0.0, True, id="tiny-real-gain-is-better"),
    pytest.param(1.0, 0.99, "maximize", 0.01, True, id="perfect-score-by-min-improvement"),
    pytest.param(0.20, 0.25, "minimize", 0.0, True, id="minimize-lower-is-promoted"),
    pytest.param(0.30, 0.25, "minimize", 0.0, False, id="minimize-higher-is-rejected"),
    pytest.param(0.25, 0.25, "minimize", 0.0, False, id="minimize-equal-is-not-better"),
    pytest.param(0.24, 0.25, "minimize", 0.02, False, id="minimize-below-min-improvement"),
    pytest.param(0.82, 0.83, "minimize", 0.01, True, id="minimize-min-improvement-despite-noise"),
    pytest.param(0.3, 0.1 + 0.2, "minimize", 0.0, False, id="minimize-float-noise-is-not-better"),
]


@pytest.mark.parametrize(("candidate", "production", "direction", "min_imp", "promote"), GATE_TABLE)
def test_gate_rule_table(candidate, production, direction, min_imp, promote):
    decision = decide(candidate, production, direction, min_imp)
    assert decision.promote is promote, decision.reason


COMPARED = [row for row in GATE_TABLE if row.values[1] is not None]


@pytest.mark.parametrize(("candidate", "production", "direction", "min_imp", "promote"), COMPARED)
def test_bounds_agree_with_decide_for_every_row(candidate, production, direction, min_imp, promote):
    # The promote step's DynamoDB condition is built from bounds(); it must judge like decide().
    limits = bounds(candidate, direction, min_imp)
    assert beats(production, limits, direction) is promote


def test_reason_of_a_promotion_names_metric_values_version_and_rule():
    decision = decide(0.9412, 0.9123, "maximize", 0.0, metric="accuracy", production_version=3)
    assert decision.reason.startswith("accuracy 0.9412 beats production 0.9123 (v3) by 0.0289")
    assert ">= 0.0000" in decision.reason


def test_reason_of_the_first_model_says_there_was_nothing_to_beat():
    decision = decide(0.8812, None, "maximize", 0.0, metric="accuracy")
    assert decision.reason == "accuracy 0.8812: first model, no production model to beat"


def test_reason_of_a_rejection_states_the_rule():
    decision = decide(0.9059, 0.9123, "maximize", 0.0, metric="accuracy", production_version=3)
    assert decision.reason == (
        "accuracy 0.9059 does not beat production 0.9123 (v3): a new model must be strictly "
        "higher by >= 0.0000"
    )


def test_reason_of_a_too_small_gain_shows_gain_and_requirement():
    decision = decide(0.9150, 0.9123, "maximize", 0.005, metric="accuracy", production_version=7)
    assert "by only 0.0027 < 0.0050 required" in decision.reason
    assert "(v7)" in decision.reason


def test_reason_of_minimize_says_lower_is_better():
    decision = decide(0.20, 0.25, "minimize", 0.0, metric="log_loss", production_version=2)
    assert decision.reason.startswith("log_loss 0.2000 beats production 0.2500 (v2) by 0.0500")
    assert "lower is better" in decision.reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"direction": "up"}, "direction 'up' must be one of"),
        ({"min_improvement": -0.01}, "min_improvement -0.01 must be a finite number >= 0"),
        ({"candidate": math.nan}, "candidate value nan is not a finite number"),
        ({"production": math.inf}, "production value inf is not a finite number"),
    ],
)
def test_decide_refuses_invalid_inputs_with_a_message_naming_them(kwargs, message):
    args = {"candidate": 0.9, "production": 0.8, "direction": "maximize", "min_improvement": 0.0}
    with pytest.raises(ValueError, match=message):
        decide(**(args | kwargs))


def test_gate_rule_from_env_reads_direction_and_min_improvement(monkeypatch):
    monkeypatch.setenv("GATE_DIRECTION", "minimize")
    monkeypatch.setenv("GATE_MIN_IMPROVEMENT", "0.005")
    assert GateRule.from_env() == GateRule("minimize", 0.005)


@pytest.mark.parametrize(
    ("direction", "min_imp", "message"),
    [
        ("sideways", "0", "GATE_DIRECTION='sideways' must be one of"),
        ("maximize", "a lot", "GATE_MIN_IMPROVEMENT='a lot' is not a number"),
        ("maximize", "-1", "GATE_MIN_IMPROVEMENT=-1.0 must be >= 0"),
        ("maximize", "", "GATE_MIN_IMPROVEMENT is not set"),
    ],
)
def test_gate_rule_from_env_names_the_bad_variable(monkeypatch, direction, min_imp, message):
    from lambdas._aws import ConfigurationError

    monkeypatch.setenv("GATE_DIRECTION", direction)
    monkeypatch.setenv("GATE_MIN_IMPROVEMENT", min_imp)
    with pytest.raises(ConfigurationError, match=message):
        GateRule.from_env()
