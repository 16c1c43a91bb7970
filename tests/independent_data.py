"""Independent DICOM test files: pydicom's own (``test_files``, ``charset_files``) and those of
the ``pydicom-data`` package (a test extra), found on disk only: never downloaded."""

from __future__ import annotations

from pathlib import Path

import pydicom


def folders() -> list[Path]:
    """pydicom's test and charset folders, and pydicom-data's folder when it is installed."""
    root = Path(pydicom.__file__).parent / "data"
    found = [root / "test_files", root / "charset_files"]
    try:
        import data_store  # the pydicom-data package

        found.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return [f for f in found if f.is_dir()]


def data_file(name: str) -> Path:
    """The path of test file ``name`` in one of :func:`folders` (no network fallback)."""
    for folder in folders():
        path = folder / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"{name}: not in pydicom's test files nor in pydicom-data (pip install pydicom-data)")
