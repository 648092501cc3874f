"""`rtcbench report`: Markdown plus figures (PNG and SVG) for one run, built from the SQL files in ``reports/``.

Every number in the report comes from a query in ``reports/*.sql`` run on a read-only connection:
``run.sql`` (provenance), ``cells.sql`` (one row per cell), ``jerk.sql`` (per-rollout outcome and
smoothness: the box plots and the paired tests against naive), ``delay_survival.sql`` (distribution of the
drawn delays and of their forecasts per setup) and ``rates.sql`` (violation, stall and forecast rates).
The queries take the run id as ``$run_id``.

Modules, by job:

- `rtcbench.report.queries`: the SQL files, which run to report (`pick_run`), running the queries;
- `rtcbench.report.figures` and `rtcbench.report.delays`: the figures (and the delay percentile table);
- `rtcbench.report.sections`: findings, the paired table against naive, schedules, provenance;
- `rtcbench.report.page`: the page itself (`write_report`);
- `rtcbench.report.style`: method order, colour-blind-safe colours, PNG and SVG files.

The paired tests are `rtcbench.paired`'s (McNemar on the per-rollout solves, a paired bootstrap of the jerk
difference), shared with the study (`rtcbench.study`, which builds on this package); number formats are
`rtcbench.tables`'.
"""

from rtcbench.report.page import write_report
from rtcbench.report.queries import QUERIES, REPORTS_DIR, load_query, pick_run, run_queries, sort_cells

__all__ = ["QUERIES", "REPORTS_DIR", "load_query", "pick_run", "run_queries", "sort_cells", "write_report"]
