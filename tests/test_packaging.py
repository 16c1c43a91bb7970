"""What `pip install .` ships: a wheel built from the sources carries the profiles, the data tables
and the ledger migrations, works from where it is installed, and builds without warnings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel, built from a copy of the sources (a build writes build/ and *.egg-info in place)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("sfr_gateway", "profiles"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: setuptools comes from the test extras, so the build needs no network.
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation",
                           "--wheel-dir", str(out), str(src)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("sfr_gateway-*.whl")
    return wheel, proc.stdout + proc.stderr


def test_wheel_carries_profiles_data_and_migrations(built: tuple[Path, str]) -> None:
    wheel, _ = built
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"sfr_gateway/profiles/{p.name}" for p in (ROOT / "profiles").iterdir() if p.suffix in (".toml", ".md")}
    expected |= {f"sfr_gateway/data/{p.name}" for p in (ROOT / "sfr_gateway/data").iterdir() if p.suffix in (".json", ".md")}
    expected |= {f"sfr_gateway/ledger/migrations/{p.name}" for p in (ROOT / "sfr_gateway/ledger/migrations").glob("*.sql")}
    expected |= {"sfr_gateway/py.typed", "sfr_gateway/profiles/__init__.py"}
    assert len(expected) > 10 and expected <= names, sorted(expected - names)
    assert not any("__pycache__" in n or n.startswith(("profiles/", "tests/")) for n in names)


def test_build_prints_no_warnings(built: tuple[Path, str]) -> None:
    _, output = built
    noisy = [line for line in output.splitlines() if "warn" in line.lower() or "deprecat" in line.lower()]
    assert not noisy, "\n".join(noisy)


def test_installed_wheel_works_from_its_install_location(built: tuple[Path, str], tmp_path: Path) -> None:
    wheel, _ = built
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site),
                           str(wheel)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    probe = (
        "import sys, pathlib, sfr_gateway\n"
        "from sfr_gateway.deid.profile import available_profiles, load_profile\n"
        "from sfr_gateway.ledger.db import migrations\n"
        "assert pathlib.Path(sfr_gateway.__file__).is_relative_to(sys.argv[1]), sfr_gateway.__file__\n"
        "profiles = available_profiles()\n"
        "for name in profiles: load_profile(name)\n"  # reads profiles/*.toml and the PS3.15 tables in data/
        "print(len(migrations()), ' '.join(profiles))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", probe, str(site)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    count, names = run.stdout.split(maxsplit=1)
    assert int(count) == len(list((ROOT / "sfr_gateway/ledger/migrations").glob("*.sql")))
    assert "basic" in names.split()
