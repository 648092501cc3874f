"""Method configs: a tagged union of small frozen pydantic models, discriminated by ``kind``.

Every field here is static for the jitted rollout (it changes shapes or control flow), so a method
config is part of the compile key; delays, forecasts and seeds are not.

    methods:
      - {kind: naive}
      - {kind: rtc, schedule: exp, beta: 5.0}
      - {kind: rtc, schedule: hard}
      - {kind: bid, n_samples: 16}
      - {kind: te, m: 0.01}
      - {kind: sync}
      - {kind: ttrtc, policy: ../../policies/{level}/ttrtc.msgpack}

`label` is the name a method gets in the results store (column `method`); set ``name`` to override it.
Any method may name its own checkpoint with ``policy`` (required for ``ttrtc``); otherwise it runs the
scenario's. Two methods that differ only in ``name`` and ``policy`` share one compiled episode.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer


class _Method(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # no bool or str read as a number

    name: str | None = Field(default=None, description="label in the results store; default derived from the config")
    policy: str | None = Field(default=None, description="this method's own checkpoint instead of the scenario's "
                               "(e.g. to compare policy families in one run); may contain {level}")

    @property
    def label(self) -> str:
        return self.name or self._default_label()

    @model_serializer(mode="wrap")
    def _drop_unset_policy(self, handler):
        # An unset `policy` is left out of dumps, so the canonical JSON (and so every config hash) of a
        # scenario written before methods could name a checkpoint is unchanged.
        data = handler(self)
        if isinstance(data, dict) and data.get("policy", 0) is None:
            del data["policy"]
        return data

    def compute_key(self) -> _Method:
        """This config without what does not change the computation (its label and its checkpoint's path: the
        weights are a traced input), so methods that differ only there share one compiled episode."""
        return self.model_copy(update={"name": None, "policy": None})

    def _default_label(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


class NaiveMethod(_Method):
    """Sample a fresh chunk and ignore the prefix."""

    kind: Literal["naive"] = "naive"

    def _default_label(self) -> str:
        return "naive"


class RTCMethod(_Method):
    """Inference-time real-time chunking: guided inpainting of the frozen prefix (docs/DESIGN.md §3)."""

    kind: Literal["rtc"] = "rtc"
    schedule: Literal["exp", "linear", "hard", "ones"] = "exp"
    beta: float = Field(default=5.0, gt=0, description="maximum guidance weight")

    @field_validator("beta")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    def _default_label(self) -> str:
        return f"rtc_{self.schedule}"


class BIDMethod(_Method):
    """Bidirectional decoding: best of N samples by backward loss against the real prefix positions."""

    kind: Literal["bid"] = "bid"
    n_samples: int = Field(default=16, ge=1, le=1024)
    weak_policy: str | None = Field(default=None, description="checkpoint of a weak policy for the forward contrast")
    n_weak_samples: int = Field(default=32, ge=1, le=1024)
    contrast_k: int = Field(default=3, ge=1)

    def _default_label(self) -> str:
        return f"bid{self.n_samples}" + ("_contrast" if self.weak_policy else "")


class TEMethod(_Method):
    """Temporal ensembling (ACT): average all arrived predictions for the current step, weights exp(-m*i)."""

    kind: Literal["te"] = "te"
    m: float = Field(default=0.01, ge=0)

    @field_validator("m")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    def _default_label(self) -> str:
        return "te"


class SyncMethod(_Method):
    """Stop-and-wait: the world pauses while inference runs; wall steps count the pauses."""

    kind: Literal["sync"] = "sync"

    def _default_label(self) -> str:
        return "sync"


class TTRTCMethod(_Method):
    """Training-time RTC: the first dhat prefix actions are fed as clean tokens (tau = 1)."""

    kind: Literal["ttrtc"] = "ttrtc"
    policy: str = Field(description="checkpoint trained with per-token flow time; may contain {level}")

    def _default_label(self) -> str:
        return "ttrtc"


MethodConfig = Annotated[
    NaiveMethod | RTCMethod | BIDMethod | TEMethod | SyncMethod | TTRTCMethod,
    Field(discriminator="kind"),
]

METHOD_KINDS = ("naive", "rtc", "bid", "te", "sync", "ttrtc")
