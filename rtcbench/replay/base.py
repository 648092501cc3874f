"""Shared pydantic base for every replay config model: strict, immutable, finite numbers only."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """`extra="forbid"` (unknown keys are errors), frozen, and NaN/inf floats refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
