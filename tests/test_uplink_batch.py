"""Re-encoded images in batches (issue 20): `run` with [batch] image_compression, the manifest's
transfer syntax and pixel digest, and `central open` refusing a code stream that does not decode
to the site's pixels."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from deid_fixtures import plan_for, pz_for
from independent_data import data_file
from pipeline_fixtures import Site, site  # noqa: F401
from pydicom.pixels import pixel_array

from sfr_gateway import central
from sfr_gateway.batch import write as package
from sfr_gateway.crypto import age, sign
from sfr_gateway.deid.files import PixelRef, deidentify_file
from sfr_gateway.deid.recode import JPEG_LS_LOSSLESS, reencode
from sfr_gateway.errors import ConfigError, IntegrityError
from sfr_gateway.home.config import load_config

CENTRAL = age.Identity.generate()
SITE = sign.generate_signing_key()


def _set(site: Site, value: str) -> None:
    config = site.home / "config.toml"
    text = config.read_text()
    assert 'image_compression = "' in text  # init writes the setting with its default
    lines = [f'image_compression = "{value}"' if line.startswith("image_compression =") else line
             for line in text.splitlines()]
    config.write_text("\n".join(lines) + "\n")
    assert load_config(site.home).image_compression == value


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def test_run_with_jpeg_ls_delivers_bit_exact_pixels_checked_at_central(site: Site, cli) -> None:
    _set(site, "jpeg-ls")
    site.consent_all(cli)
    proc = site.gateway("run", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["release"]
    datasets = site.open_all()  # central open decodes every re-encoded file and checks its digest
    assert len(datasets) == report["instances"] > 0
    assert {str(ds.file_meta.TransferSyntaxUID) for ds in datasets} == {JPEG_LS_LOSSLESS}
    sources = {_digest(pixel_array(str(p))) for p in site.export.files
               if pydicom.dcmread(p, stop_before_pixels=True).get("Modality") == "CT"}
    assert {_digest(ds.pixel_array) for ds in datasets} <= sources  # every released image, bit for bit
    for manifest in (site.central / "opened").glob("*/manifest.json"):
        for entry in json.loads(manifest.read_text())["files"]:
            assert entry["transfer_syntax"] == JPEG_LS_LOSSLESS and len(entry["pixel_sha256"]) == 64
            assert entry["reencoded_from"] in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def test_the_option_off_keeps_pixels_in_place_and_records_the_syntax(site: Site, cli) -> None:
    from sfr_gateway.deid.folder import init_worker
    from sfr_gateway.run.release import _release_one, run_spec

    assert load_config(site.home).image_compression == "jpeg-ls"  # the default (README: the decision and its table)
    _set(site, "none")
    config = load_config(site.home)
    path = next(p for p in site.export.files if pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT")
    init_worker(run_spec(config), quiet=True)
    status, (_, _, pixels, entry) = _release_one(bytes(path))
    assert status == "ok" and isinstance(pixels, PixelRef)  # the fast path: pixel bytes never leave the source
    assert set(entry) == {"transfer_syntax"}
    _set(site, "jpeg-ls")
    init_worker(run_spec(load_config(site.home)), quiet=True)
    status, (_, data, pixels, entry) = _release_one(bytes(path))
    assert status == "ok" and pixels is None and entry["transfer_syntax"] == JPEG_LS_LOSSLESS
    assert pydicom.dcmread(__import__("io").BytesIO(data)).file_meta.TransferSyntaxUID == JPEG_LS_LOSSLESS
    site.consent_all(cli)
    _set(site, "none")
    proc = site.gateway("run", "--json")
    assert proc.returncode == 0, proc.stderr
    site.open_all()
    for manifest in (site.central / "opened").glob("*/manifest.json"):
        for entry in json.loads(manifest.read_text())["files"]:
            assert entry["transfer_syntax"] == "1.2.840.10008.1.2.1" and "pixel_sha256" not in entry


def test_an_unknown_image_compression_is_a_config_error(site: Site) -> None:
    config = site.home / "config.toml"
    config.write_text(config.read_text().replace('image_compression = "jpeg-ls"', 'image_compression = "jpeg2000"'))
    with pytest.raises(ConfigError, match="image_compression"):
        load_config(site.home)


@pytest.fixture
def opener(tmp_path: Path):
    count = iter(range(100))

    def open_(items) -> central.OpenedBatch:
        info = package.BatchInfo(site="SITE-T", batch_id=f"b-{next(count)}", profile="basic")
        batch = package.write_batch(tmp_path / "outbox", info, items, [CENTRAL.recipient], SITE)
        return central.open_batch(batch.path, [CENTRAL], {"SITE-T": sign.PublicKey.of(SITE)}, tmp_path / "in")
    return open_


def _recoded(name: str = "693_UNCR.dcm"):
    plan = plan_for("basic")
    recoded = reencode(deidentify_file(data_file(name), plan, pz_for(plan), record=False, pixels_in_place=True),
                       "jpeg-ls")
    assert recoded is not None
    return recoded


def _scan_offset(data: bytes) -> int:
    """Where the first frame's JPEG-LS scan data starts (after its SOS segment)."""
    sos = data.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")


def test_central_open_checks_the_pixel_digest_and_refuses_a_corrupted_code_stream(opener) -> None:
    recoded = _recoded()
    entry = recoded.manifest_entry()
    opened = opener([("a/1.dcm", recoded.data, entry)])
    assert opened.files == 1 and opened.manifest["files"][0]["pixel_sha256"] == recoded.pixel_sha256
    damaged = bytearray(recoded.data)
    start = _scan_offset(recoded.data)
    for i in range(start + 500, start + 540):  # a codec fault: bytes of the scan changed before hashing and signing
        damaged[i] = (damaged[i] + 0x11) % 0xFF
    with pytest.raises(IntegrityError, match="pixel digest|do not decode"):
        opener([("a/1.dcm", bytes(damaged), entry)])


def test_central_open_refuses_pixels_that_differ_and_malformed_entries(opener) -> None:
    recoded = _recoded("CT_small.dcm")
    wrong = dict(recoded.manifest_entry(), pixel_sha256="0" * 64)  # decodes, but not to the site's pixels
    with pytest.raises(IntegrityError, match="pixel digest"):
        opener([("a/1.dcm", recoded.data, wrong)])
    for bad in ({"pixel_sha256": "xyz", "transfer_syntax": JPEG_LS_LOSSLESS},
                {"pixel_sha256": "0" * 64, "transfer_syntax": "1.2.840.10008.1.2.1"},
                {"transfer_syntax": "not a uid"}):
        with pytest.raises(IntegrityError, match="manifest"):
            opener([("b/1.dcm", recoded.data, bad)])
    native = opener([("c/1.dcm", b"not checked: no pixel digest", {"transfer_syntax": "1.2.840.10008.1.2.1"})])
    assert native.files == 1
