"""Ships the repository's data inside the package, so an installed testbed finds it without a checkout.

kernel-config/, images/, cases/mixes and cases/topologies stay at the top of
the repository, where people edit them; a wheel carries a copy of them as
testbed/_data (testbed.core.paths prefers a checkout's own files when there is
one). Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = ("kernel-config", "images", "cases/mixes", "cases/topologies")


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the checkout itself
            return
        root = Path(__file__).resolve().parent
        for name in DATA:
            shutil.copytree(root / name, Path(self.build_lib) / "testbed" / "_data" / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithData})
