"""`rtcbench publish`: a static HTML site of a results file, in the spirit of asv's ``publish``.

The site (`rtcbench.publish.site`) has an index of the runs (newest first) and of the scenarios, a page per
run (`rtcbench.publish.run_page`: provenance, cells with Wilson intervals, the report's figures, videos
already rendered, paired comparisons against naive) and a page per scenario
(`rtcbench.publish.history`: each cell's solve rate across runs, not comparable runs marked). Every number
comes from the results file, read through `rtcbench.results` and `rtcbench report`'s queries
(`rtcbench.publish.data`); the HTML comes from the Jinja2 templates in ``templates/`` (`rtcbench.publish.html`).

This package sits above `rtcbench.report` and reads the store alone: it never runs the engine or reads a
scenario file (pyproject.toml's import contract).
"""

from rtcbench.publish.site import MANIFEST, Published, publish_site

__all__ = ["MANIFEST", "Published", "publish_site"]
