"""Package list: every ``sfr_gateway*`` directory, plus top-level ``profiles/`` as ``sfr_gateway.profiles``.

Namespace discovery, so data-only directories (``ledger/migrations``) are packages too and setuptools
ships their files without deprecation warnings. Everything else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["sfr_gateway", "sfr_gateway.*"], exclude=["*__pycache__*"]),
        "sfr_gateway.profiles",
    ],
    package_dir={"sfr_gateway.profiles": "profiles"},
)
