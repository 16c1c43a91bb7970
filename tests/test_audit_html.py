"""The HTML report is one self-contained file that renders in headless Chromium with its thumbnails."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from audit_fixtures import make_small_export
from pydicom.data import get_testdata_file

from sfr_gateway.audit.thumbs import encode_png, thumbnail_of_file
from sfr_gateway.sample import SampleExport

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
          "--disable-sync", "--no-first-run"]

@pytest.fixture(scope="module")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> SampleExport:
    return make_small_export(tmp_path_factory)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, *_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """Independent PNG reader (8-bit, filter 0 only): width, height, colour type, raw pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        if kind == b"IHDR":
            ihdr = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", ihdr[:10])
    assert depth == 8
    raw = zlib.decompress(idat)
    stride = width * (3 if color == 2 else 1) + 1
    assert all(raw[i * stride] == 0 for i in range(height))
    return width, height, color, b"".join(raw[i * stride + 1:(i + 1) * stride] for i in range(height))


def test_png_encoder_round_trips() -> None:
    import numpy as np

    grey = (np.arange(12 * 7).reshape(7, 12) % 256).astype(np.uint8)
    assert png_pixels(encode_png(grey)) == (12, 7, 0, grey.tobytes())
    rgb = np.stack([grey, 255 - grey, grey // 2], axis=-1)
    assert png_pixels(encode_png(rgb)) == (12, 7, 2, rgb.tobytes())


def test_thumbnails_of_real_files() -> None:
    ct = thumbnail_of_file(Path(get_testdata_file("CT_small.dcm")), 32)
    assert ct is not None
    width, height, color, pixels = png_pixels(ct)
    assert (width, height, color) == (32, 32, 0) and len(set(pixels)) > 20  # windowed, not flat
    rgb = thumbnail_of_file(Path(get_testdata_file("SC_rgb_small_odd.dcm")))
    assert rgb is not None and png_pixels(rgb)[2] == 2
    assert thumbnail_of_file(Path(get_testdata_file("rtplan.dcm"))) is None  # no pixels: placeholder


@pytest.mark.tool("chromium", "chromium-browser")
def test_html_report_renders_with_thumbnails(home: Path, small_export: SampleExport, cli, tmp_path: Path) -> None:
    report = tmp_path / "audit.html"
    broken = tmp_path / "broken" / "cut.dcm"  # quarantined as truncated; its pixels cannot be decoded
    broken.parent.mkdir()
    whole = small_export.files[1].read_bytes()
    broken.write_bytes(whole[: len(whole) - 100])
    result = cli("--home", home, "audit", "--all", small_export.root, broken.parent, "--format", "html", "--output", report)
    assert result.exit_code == 0, result.stderr
    text = report.read_text(encoding="utf-8")
    # self-contained: no URL other than data: URIs, no external stylesheet or script
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!data:)""", text)
    assert "url(" not in text and "@import" not in text
    thumbs = re.findall(r'<img class="thumb[^"]*" src="data:image/png;base64,', text)
    series = len(re.findall(r"<tr><td data-sort=", text))
    quarantined = len([f for f in small_export.files if f.name.startswith("dose_")]) + 1
    assert len(re.findall(r'<img class="thumb placeholder"', text)) == 1  # the cut file (its series shows its middle image)
    assert "truncated" in text
    assert series > 0 and quarantined > 0 and len(thumbs) == series + quarantined

    dom = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", report.resolve().as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body is not None, dom.stdout[:500]
    assert f'data-images="{len(thumbs)}/{len(thumbs)}"' in body.group(0)
    assert 'data-images-ok="yes"' in body.group(0)
    assert "data-js-errors" not in body.group(0)

    shot = tmp_path / "audit.png"
    done = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", report.resolve().as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    width, height, _, _ = png_pixels_header(shot.read_bytes())
    assert (width, height) == (1280, 2000)


def png_pixels_header(data: bytes) -> tuple[int, int, int, int]:
    """Width, height, depth and colour type of a PNG (Chromium's screenshots use filters we do not decode)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, color
