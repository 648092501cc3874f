"""How the figures of `rtcbench report` and `rtcbench study` look, defined once.

- **Method order**: ``naive`` first, then the order of Black et al. (2025): soft RTC, hard RTC, BID,
  temporal ensembling, training-time RTC (`PAPER_METHODS`); variants of a method follow it (``rtc_linear``
  after ``rtc_hard``, ``bid8`` after ``bid16``), then ``sync``, then anything else by name. A label
  ``FAMILY.METHOD`` (the modality ablation) sorts by family, then by method.
- **Colours**: the Okabe-Ito palette, which stays distinguishable under the common colour-vision
  deficiencies. A method has one colour in every figure (by its base method; families of an ablation are
  told apart by a hatch). Delay setups and rate kinds use their own fixed lists of the same palette.
- **Files**: every figure is written as a PNG at `DPI` and as an SVG beside it, each through a temporary
  file renamed into place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rtcbench.errors import atomic_output

# The paper's methods in its order, naive first (also the methods of the study's constant-delay sweep).
PAPER_METHODS = ("naive", "rtc_exp", "rtc_hard", "bid16", "te", "ttrtc")

# Okabe & Ito (2008), "Color Universal Design"; the grey stands in for black on filled shapes.
BLACK = "#000000"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
BLUISH_GREEN = "#009E73"
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
REDDISH_PURPLE = "#CC79A7"
GREY = "#999999"

METHOD_COLORS = {
    "naive": GREY,
    "rtc_exp": BLUE,
    "rtc_hard": SKY_BLUE,
    "bid16": ORANGE,
    "te": BLUISH_GREEN,
    "ttrtc": REDDISH_PURPLE,
    "sync": BLACK,
}
# Methods not named above, in method order.
SPARE_COLORS = (VERMILLION, YELLOW, "#6E4C12", "#4D4D4D")
FAMILY_HATCHES = ("", "///", "...", "xxx", "\\\\\\", "ooo", "---", "+++")
# Delay setups (the delay plot) and rate kinds (the violations plot).
SETUP_COLORS = (BLUE, VERMILLION, BLUISH_GREEN, REDDISH_PURPLE, ORANGE, SKY_BLUE, BLACK, "#6E4C12")
RATE_STYLES = {
    "violation_rate": (VERMILLION, ""),
    "forecast_miss_rate": (REDDISH_PURPLE, "///"),
    "over_forecast_rate": (BLUE, "..."),
    "stall_frac": (GREY, ""),
}
DPI = 150


def split_family(label: str) -> tuple[str, str]:
    """``FAMILY.METHOD`` -> (family, method); ("", label) for a label without a family."""
    family, dot, method = label.rpartition(".")
    return (family, method) if dot and family else ("", label)


def _base_rank(method: str) -> float:
    if method in PAPER_METHODS:
        return float(PAPER_METHODS.index(method))
    if method == "sync":
        return len(PAPER_METHODS) + 0.5
    for i, known in reversed(list(enumerate(PAPER_METHODS))):
        stem = re.sub(r"(_[a-z]+|\d+)$", "", known)  # rtc_exp -> rtc, bid16 -> bid
        if stem != known and method.startswith(stem):
            return i + 0.5  # a variant follows the last paper method of its kind
    return len(PAPER_METHODS) + 1.0


def method_key(label: str) -> tuple:
    """Sort key of a method label: family, then the method's place in the paper's order, then its name."""
    family, method = split_family(label)
    return (family, _base_rank(method), method)


def ordered_methods(labels) -> list[str]:
    """Distinct method labels: naive first, then the paper's order (see the module docstring)."""
    return sorted(dict.fromkeys(labels), key=method_key)


@dataclass(frozen=True)
class MethodStyle:
    """How one method label is drawn: its fill colour and, for a family of an ablation, a hatch."""

    color: str
    hatch: str


def method_styles(labels) -> dict[str, MethodStyle]:
    """One style per method label; the same base method always gets the same colour."""
    methods = ordered_methods(labels)
    families = sorted({split_family(m)[0] for m in methods})
    spare = {}
    for m in methods:
        base = split_family(m)[1]
        if base not in METHOD_COLORS and base not in spare:
            spare[base] = SPARE_COLORS[len(spare) % len(SPARE_COLORS)]
    return {m: MethodStyle(METHOD_COLORS.get(split_family(m)[1]) or spare[split_family(m)[1]],
                           FAMILY_HATCHES[families.index(split_family(m)[0]) % len(FAMILY_HATCHES)])
            for m in methods}


def save_figure(fig, png: Path, field: str | None = "--out") -> list[Path]:
    """Write `png` (at `DPI`) and an SVG beside it, then close the figure -> the paths written.

    Each file is written under a temporary name and renamed into place (`rtcbench.errors.atomic_output`),
    so a full disk leaves no empty or partial figure; the failure is a `UserError` naming the file and
    ``field``, the option that chose the folder."""
    import matplotlib.pyplot as plt

    svg = png.with_suffix(".svg")
    try:
        with atomic_output(png, field) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
        with atomic_output(svg, field) as tmp:
            fig.savefig(tmp, format="svg", bbox_inches="tight", metadata={"Date": None})
    finally:
        plt.close(fig)
    return [png, svg]
