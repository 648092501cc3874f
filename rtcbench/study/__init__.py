"""`rtcbench study`: the study page, built on the report (`rtcbench.report`) and the results store.

Modules, by job:

- `rtcbench.study.runs`: finding and loading the runs (`RunData`), shape checks, bench JSON lines;
- `rtcbench.study.rules`: the decision rules (issue #14's `paper_ordering`, where soft and hard RTC differ,
  the Holm correction of secondary claims); `rtcbench.study.claims`: the sweep's claims of Black et al.;
- `rtcbench.study.sweep`, `rtcbench.study.tail`, `rtcbench.study.ablation`, `rtcbench.study.cost`,
  `rtcbench.study.followup`: the page's parts;
- `rtcbench.study.page`: the page itself (`write_study`).

The paired statistics are `rtcbench.paired`'s, number formats `rtcbench.tables`'.
"""

from rtcbench.study.ablation import families
from rtcbench.study.page import write_study
from rtcbench.study.runs import RunData, check_sweep, check_tail, find_runs, load_runs, read_bench_lines

__all__ = ["RunData", "check_sweep", "check_tail", "families", "find_runs", "load_runs", "read_bench_lines",
           "write_study"]
