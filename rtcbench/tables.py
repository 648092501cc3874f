"""How numbers look on the generated pages (`rtcbench report`, `rtcbench study`), defined once.

- `fmt`: a table cell with 3 significant digits, never scientific notation above 1 (1,750 not 1.75e+03);
- `ms`, `pct`, `p_value`: milliseconds, shares and p-values;
- `solve_ci`: a solve rate with its Wilson 95% interval, ``0.812 [0.776, 0.843]``;
- `md_table`: a Markdown table from a frame;
- `pyplot`: matplotlib's pyplot on the non-interactive Agg backend (imported only when a figure is drawn).

Missing values (None, NA, NaN, inf) print as an en dash everywhere.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

MISSING = "–"


def is_missing(value) -> bool:
    """None, pandas NA/NaT, a non-finite float, or anything pandas calls missing."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(value)
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def fmt(value, digits: int = 3) -> str:
    """A table cell: `digits` significant digits, never scientific notation above 1 (1,750 not 1.75e+03)."""
    if is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2e}"
        text = f"{value:.{digits}g}"
        return f"{value:,.0f}" if "e" in text else text
    return str(value)


def ms(value) -> str:
    """Milliseconds: whole ms with thousands separators from 100 ms, else one or two decimals."""
    if is_missing(value):
        return MISSING
    value = float(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def pct(value) -> str:
    """A share as a percentage with one decimal; "< 0.1%" for a share that is small but not 0."""
    if is_missing(value):
        return MISSING
    value = float(value)
    return "0%" if value == 0 else "< 0.1%" if value < 0.001 else f"{100 * value:.1f}%"


def p_value(p: float) -> str:
    """A p-value: two significant digits, "< 0.0001" below that (no scientific notation)."""
    if is_missing(p):
        return MISSING
    return "< 0.0001" if p < 1e-4 else f"{p:.2g}"


def solve_ci(row: pd.Series | None) -> str:
    """A cell's solve rate and Wilson 95% interval, 3 decimals; a dash for a cell that is not there."""
    if row is None:
        return MISSING
    return f"{row['solve_rate']:.3f} [{row['solve_ci_low']:.3f}, {row['solve_ci_high']:.3f}]"


def md_table(frame: pd.DataFrame, columns: list[tuple]) -> str:
    """Markdown table; columns are (column, title) or (column, title, formatter); `fmt` formats by default."""
    head = "| " + " | ".join(col[1] for col in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    rows = ["| " + " | ".join((col[2] if len(col) > 2 else fmt)(row[col[0]]) for col in columns) + " |"
            for _, row in frame.iterrows()]
    return "\n".join([head, rule, *rows])


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
