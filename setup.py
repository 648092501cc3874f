"""Build hook: copy the report SQL and the shipped traces into the wheel (see rtcbench/shipped.py).

All metadata lives in pyproject.toml; this file only adds files that sit outside the package folder.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# (source folder in the repository, glob, folder under rtcbench/_shipped/ in the wheel)
SHIPPED = (("reports", "*.sql", "reports"), ("bench/traces", "*.json", "traces"))


class BuildPyWithShippedFiles(build_py):
    def run(self):
        super().run()
        for src, pattern, dst in SHIPPED:
            out = Path(self.build_lib) / "rtcbench" / "_shipped" / dst
            out.mkdir(parents=True, exist_ok=True)
            files = sorted((ROOT / src).glob(pattern))
            if not files:
                raise RuntimeError(f"no {pattern} files in {ROOT / src}: the wheel would ship without them")
            for f in files:
                shutil.copyfile(f, out / f.name)


setup(cmdclass={"build_py": BuildPyWithShippedFiles})
