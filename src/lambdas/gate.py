"""The promotion gate: is a candidate's metric better than production's by enough?

One rule serves two places: `decide` (the evaluate step, in Python floats) and the promote step's
conditional write (in DynamoDB numbers). Both compare the production value with the same two bounds
from `bounds`, so they cannot disagree about a pair of values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lambdas import _aws

DIRECTIONS = ("maximize", "minimize")
# Metrics are computed in floating point: 0.1 + 0.2 != 0.3. Differences this small are noise, not
# improvement, and a model must not be promoted (or refused) because of them.
TOLERANCE = 1e-12


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class Bounds:
    """Production values the candidate beats: below both (maximize) or above both (minimize).

    `strict` makes the candidate strictly better beyond float noise; `margin` makes it better by at
    least the required improvement.
    """

    strict: float
    margin: float


@dataclass(frozen=True)
class GateRule:
    """How the gate metric is compared: its direction and the improvement a candidate must show."""

    direction: str
    min_improvement: float

    def __post_init__(self) -> None:
        _check(self.direction, self.min_improvement)

    @classmethod
    def from_env(cls) -> GateRule:
        direction = _aws.env("GATE_DIRECTION")
        if direction not in DIRECTIONS:
            raise _aws.ConfigurationError(
                f"environment variable GATE_DIRECTION={direction!r} must be one of {DIRECTIONS} "
                "(gate.direction in config/project.yaml)"
            )
        min_improvement = _aws.env_float("GATE_MIN_IMPROVEMENT")
        if min_improvement < 0:
            raise _aws.ConfigurationError(
                f"environment variable GATE_MIN_IMPROVEMENT={min_improvement} must be >= 0 "
                "(gate.min_improvement in config/project.yaml)"
            )
        return cls(direction, min_improvement)


def _check(direction: str, min_improvement: float, **values: float | None) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r} must be one of {DIRECTIONS}")
    if not math.isfinite(min_improvement) or min_improvement < 0:
        raise ValueError(f"min_improvement {min_improvement!r} must be a finite number >= 0")
    for name, value in values.items():
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{name} value {value!r} is not a finite number")


def bounds(candidate: float, direction: str, min_improvement: float) -> Bounds:
    """The production values a candidate with metric `candidate` beats under the gate rule."""
    _check(direction, min_improvement, candidate=candidate)
    if direction == "maximize":
        return Bounds(candidate - TOLERANCE, candidate - min_improvement + TOLERANCE)
    return Bounds(candidate + TOLERANCE, candidate + min_improvement - TOLERANCE)


def beats(production: float, limits: Bounds, direction: str) -> bool:
    """Whether a production value lies on the losing side of both bounds."""
    if direction == "maximize":
        return production < limits.strict and production <= limits.margin
    return production > limits.strict and production >= limits.margin


def improvement(candidate: float, production: float, direction: str) -> float:
    """How much better the candidate is (negative when worse), whatever the direction."""
    return candidate - production if direction == "maximize" else production - candidate


def decide(
    candidate: float,
    production: float | None,
    direction: str,
    min_improvement: float,
    *,
    metric: str = "metric",
    production_version: int | str | None = None,
) -> Decision:
    """Promote the first model ever; otherwise only one strictly better by >= min_improvement."""
    _check(direction, min_improvement, candidate=candidate, production=production)
    goal = "higher" if direction == "maximize" else "lower"
    if production is None:
        return Decision(True, f"{metric} {candidate:.4f}: first model, no production model to beat")
    where = f"production {production:.4f}" + (
        f" (v{production_version})" if production_version is not None else ""
    )
    gain = improvement(candidate, production, direction)
    if beats(production, bounds(candidate, direction, min_improvement), direction):
        return Decision(
            True,
            f"{metric} {candidate:.4f} beats {where} by {gain:.4f} >= {min_improvement:.4f} "
            f"({goal} is better)",
        )
    if gain > TOLERANCE:
        return Decision(
            False,
            f"{metric} {candidate:.4f} beats {where} by only {gain:.4f} < {min_improvement:.4f} "
            f"required ({goal} is better)",
        )
    return Decision(
        False,
        f"{metric} {candidate:.4f} does not beat {where}: a new model must be strictly {goal} "
        f"by >= {min_improvement:.4f}",
    )
