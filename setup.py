"""Build hook (the project's metadata is in pyproject.toml): the wheel carries hosts/.

The DCC startup files' one source is the repository's top-level ``hosts/``
folder; ``aurora-dcc install`` needs them where aurora_dcc is installed, so
the wheel maps them to ``aurora_dcc/deploy/startup_files/`` (a data folder,
not a package). pyproject.toml cannot map a folder outside the package into
it, hence this hook. An editable install reads them from the checkout.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HOSTS = Path(__file__).resolve().parent / "hosts"
TARGET = ("aurora_dcc", "deploy", "startup_files")


class BuildPyWithStartupFiles(build_py):
    """``build_py``, then hosts/ copied into the built package."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib).joinpath(*TARGET)
        for path in sorted(HOSTS.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                destination = target / path.relative_to(HOSTS)
                self.mkpath(str(destination.parent))
                self.copy_file(str(path), str(destination))


setup(cmdclass={"build_py": BuildPyWithStartupFiles})
