"""Batch compression settings: config keys, tuned zstd parameters, stock decoders still read them."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import zstandard
from crypto_fixtures import require_binary, run

from sfr_gateway import sample
from sfr_gateway.batch import write as package
from sfr_gateway.crypto import age, sign
from sfr_gateway.home.config import ConfigError, ZstdSettings, load_config, render_config

CENTRAL = age.Identity.generate()
KEY = sign.generate_signing_key()
INFO = package.BatchInfo(site="CHU-TEST", batch_id="b-zstd", profile="sfr-covid")


def _home(tmp_path: Path, batch_lines: str = "") -> Path:
    """A HOME whose config.toml is the template, with ``batch_lines`` replacing its zstd keys."""
    from sfr_gateway.home.config import HomePaths

    home = tmp_path / "home"
    home.mkdir()
    lines = render_config("T01").splitlines()
    given = {line.split("=")[0].strip() for line in batch_lines.splitlines()}
    lines = [line for line in lines if line.split("=")[0].strip() not in given]
    text = "\n".join(lines) + "\n"
    HomePaths(home).config.write_text(text.replace("[batch]\n", "[batch]\n" + batch_lines, 1))
    return home


def test_defaults_are_the_tuned_level_1(tmp_path: Path) -> None:
    assert load_config(_home(tmp_path)).zstd == ZstdSettings(level=1, threads=0, min_match=7, hash_log=6)


def test_settings_are_read_and_checked(tmp_path: Path) -> None:
    home = _home(tmp_path, "zstd_level = 3\nzstd_threads = 2\nzstd_min_match = 0\nzstd_hash_log = 0\n")
    assert load_config(home).zstd == ZstdSettings(level=3, threads=2, min_match=0, hash_log=0)


@pytest.mark.parametrize("line", ["zstd_level = 40\n", "zstd_threads = -1\n", "zstd_min_match = 9\n",
                                  'zstd_hash_log = "8"\n', "zstd_level = true\n"])
def test_bad_settings_are_refused_with_the_key(tmp_path: Path, line: str) -> None:
    home = _home(tmp_path, line)
    with pytest.raises(ConfigError, match="batch.zstd_"):
        load_config(home)


def test_tuned_parameters_round_trip_and_stay_close_to_level_1(tmp_path: Path) -> None:
    export = sample.generate_export(tmp_path / "export", patients=1, rows=512, cols=512, slices=4, extras=False)
    data = b"".join(p.read_bytes() for p in export.files)
    tuned = package.compressor(1, 0, 7, 8).compress(data)
    plain = package.compressor(1).compress(data)
    assert zstandard.ZstdDecompressor().decompress(tuned) == data
    assert tuned != plain  # the overrides do change the encoder
    assert len(tuned) < 0.6 * len(data)
    assert len(tuned) < 1.05 * len(plain)  # measured: 0.573 vs 0.557 of the raw size


def test_stock_zstd_opens_a_tuned_multithreaded_batch(tmp_path: Path) -> None:
    ageb, zstd = require_binary("age"), require_binary("zstd")
    key_file = tmp_path / "central.key"
    key_file.write_text(age.identity_file_text(CENTRAL))
    members = [(f"s/{i}.dcm", bytes([i]) * 70_000 + b"tail") for i in range(5)]
    result = package.write_batch(tmp_path / "ob", INFO, members, [CENTRAL.recipient], KEY,
                                 zstd_level=1, zstd_threads=2, zstd_min_match=7, zstd_hash_log=8)
    out = run(["bash", "-o", "pipefail", "-c", f"'{ageb}' -d -i '{key_file}' '{result.path}' | '{zstd}' -d"])
    assert out.returncode == 0, out.stderr
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tf:
        assert [(m, tf.extractfile(m).read()) for m in tf.getnames()[1:]] == members  # type: ignore[union-attr]
