"""Package list: every ``sfr_gateway*`` package, plus top-level ``profiles/`` as ``sfr_gateway.profiles``.

Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["sfr_gateway", "sfr_gateway.*"]), "sfr_gateway.profiles"],
    package_dir={"sfr_gateway.profiles": "profiles"},
)
