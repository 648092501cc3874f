"""Shared pydantic base for every replay config model: strict, immutable, finite numbers only."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """`extra="forbid"` (unknown keys are errors), frozen, NaN/inf floats refused, and strict types: no
    booleans where a number is due (lax mode would read YAML's ``rollouts: true`` as 1) and no strings
    coerced to numbers. Integers are still taken where a float is due."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)
