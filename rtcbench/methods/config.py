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
      - {kind: ttrtc, policy: "../../policies/{level}/ttrtc.msgpack"}
      - {kind: vlash, policy: "../../policies/{level}/vlash.msgpack"}
      - {kind: a2c2, base: {kind: rtc, schedule: exp}, head: "../../policies/{level}/a2c2.msgpack"}

(A path with ``{level}`` inside a flow mapping ``{...}`` must be quoted, or YAML reads its braces as syntax.)

`label` is the name a method gets in the results store (column `method`); set ``name`` to override it.
Any method may name its own checkpoint with ``policy`` (required for ``ttrtc`` and ``vlash``); otherwise it
runs the scenario's. Two methods that differ only in ``name`` and ``policy`` share one compiled episode.

``vlash`` (arXiv 2512.01031) needs a checkpoint of kind ``vlash`` (``rtcbench policy train-vlash``): a flow
policy with an extra conditioning input, the committed action(s) at the step its chunk starts executing
(`rtcbench.methods.vlash`).

``a2c2`` (arXiv 2509.23224) wraps a chunking method, its ``base`` (``naive``, ``rtc``, ``bid`` without a weak
policy, ``ttrtc`` or ``vlash``; default ``naive``), which makes the chunks exactly as it does alone; a
correction head then adds a residual to the action of every control step (`rtcbench.methods.a2c2`).
``head`` names an a2c2 checkpoint (``rtcbench policy train-a2c2``), which holds the head *and* the frozen base
policy it was trained against, so the base method runs that bundled policy (a bc, ttrtc or vlash checkpoint,
as the base kind needs), not the scenario's. ``head`` is stored as the method's ``policy`` (it may be written
``policy`` too), so the scenario resolves, checks and hashes it like any method checkpoint; errors about the
file (missing, wrong kind) name it ``methods[i].policy``. The base takes no ``policy`` or ``name`` of its own.
The default label is ``a2c2_<base label>`` (e.g. ``a2c2_rtc_exp``). Its NFE/VJP columns are the base's; the
head's per-step cost is recorded beside them (``cell_config.head_cost``, rtcbench.rows.head_cost).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_serializer


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


class VLASHMethod(_Method):
    """VLASH: the policy is conditioned on the committed action(s) at the step its chunk starts executing,
    taken from the previous chunk at the forecast dhat (`rtcbench.methods.vlash`)."""

    kind: Literal["vlash"] = "vlash"
    policy: str = Field(description="checkpoint fine-tuned with committed-action conditioning (kind vlash); "
                        "may contain {level}")

    def _default_label(self) -> str:
        return "vlash"


class _BundledTTRTC(TTRTCMethod):
    """``ttrtc`` as an a2c2 base: its per-token-time policy is the one bundled in the a2c2 checkpoint."""

    policy: None = None


class _BundledVLASH(VLASHMethod):
    """``vlash`` as an a2c2 base: its conditioned policy is the one bundled in the a2c2 checkpoint."""

    policy: None = None


A2C2Base = Annotated[
    NaiveMethod | RTCMethod | BIDMethod | _BundledTTRTC | _BundledVLASH,
    Field(discriminator="kind"),
]


class A2C2Method(_Method):
    """A2C2: a base chunking method plus a correction head that adds a residual at every control step."""

    kind: Literal["a2c2"] = "a2c2"
    base: A2C2Base = Field(default_factory=NaiveMethod, description="the chunking method that makes the chunks")
    policy: str = Field(validation_alias=AliasChoices("head", "policy"),
                        description="a2c2 checkpoint (head + the base policy it was trained against); "
                        "may contain {level}")

    @field_validator("base")
    @classmethod
    def _plain_base(cls, v):
        if v.name is not None:
            raise ValueError("the base method takes no name of its own (name the a2c2 method instead)")
        if v.policy is not None:
            raise ValueError("the base method takes no policy of its own: it runs the policy bundled in the a2c2 "
                             "checkpoint that `head` names")
        if v.kind == "bid" and v.weak_policy is not None:
            raise ValueError("a bid base takes no weak_policy (its forward contrast is not supported under a2c2)")
        return v

    def compute_key(self) -> A2C2Method:
        return self.model_copy(update={"name": None, "policy": None, "base": self.base.compute_key()})

    def _default_label(self) -> str:
        return f"a2c2_{self.base.label}"


MethodConfig = Annotated[
    NaiveMethod | RTCMethod | BIDMethod | TEMethod | SyncMethod | TTRTCMethod | VLASHMethod | A2C2Method,
    Field(discriminator="kind"),
]

METHOD_KINDS = ("naive", "rtc", "bid", "te", "sync", "ttrtc", "vlash", "a2c2")
