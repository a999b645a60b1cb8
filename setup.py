"""Build hook: a wheel carries the bundled eval sets inside the ``evals`` package.

The sets live at the top of the repository in ``datasets/`` (with their build scripts, cards
and licenses). ``build_py`` copies the data files, not the scripts, into
``evals/bundled/`` of the built package, where :func:`evals.datasets.bundled_dir` finds
them when ragtrim is installed from a wheel; a checkout reads ``datasets/`` directly.
Everything else about the package is in ``pyproject.toml``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ["*.jsonl", "stats.json", "README.md", "LICENSES.md", "cards/*.md"]


class BuildPyWithDatasets(build_py):
    def run(self):
        super().run()
        source = ROOT / "datasets"
        target = Path(self.build_lib) / "evals" / "bundled"
        for pattern in BUNDLED:
            for path in source.glob(pattern):
                dest = target / path.relative_to(source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)


setup(cmdclass={"build_py": BuildPyWithDatasets})
