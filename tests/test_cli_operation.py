"""The smaller operation problems of issue 17, each as a hospital IT engineer met it: every
command in the README's table (as sqlite-utils' test_docs does), `--home` after the command,
a sample generator command, tables whole when redirected, withdrawal requests in `status`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from monitor_fixtures import make_site

from sfr_gateway.cli import cli as gateway_cli

README = Path(__file__).resolve().parent.parent / "README.md"


def command_paths() -> list[str]:
    """Every runnable command, as typed: `run`, `consent set`, `central site add`..."""
    ctx = click.Context(gateway_cli)

    def walk(command: click.Command, prefix: list[str]) -> list[str]:
        if isinstance(command, click.Group):
            found = []
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                found += walk(sub, [*prefix, name])
            return found
        return [" ".join(prefix)]

    return walk(gateway_cli, [])


def documented_commands() -> set[str]:
    """The command paths the README's Commands tables name: `consent set/import PATIENT` gives
    `consent set` and `consent import`."""
    text = README.read_text(encoding="utf-8")
    found: set[str] = set()
    for row in re.findall(r"(?m)^\| (`(?:[^|\\]|\\.)*)\|", text):
        for span in re.findall(r"`([^`]+)`", row):
            words = []
            for word in span.split():
                if not re.fullmatch(r"[a-z][a-z/-]*", word):
                    break
                words.append(word)
            if not words:
                continue
            *head, last = words
            for alternative in last.split("/"):
                for n in range(1, len(head) + 2):
                    found.add(" ".join([*head, alternative][:n]))
    return found


def test_every_command_is_in_the_readme() -> None:
    paths = command_paths()
    assert {"deidentify", "verify", "profile show", "sample", "status", "central site add"} <= set(paths)
    missing = [p for p in paths if p not in documented_commands()]
    assert missing == [], f"commands missing from the README's command table: {missing}"


def test_home_may_come_after_the_command(tmp_path: Path, cli) -> None:
    home = tmp_path / "home"
    assert cli("init", "--site-id", "TEST01", "--home", home).exit_code == 0
    assert (home / "config.toml").is_file()
    after = cli("status", "--json", "--home", home)
    assert after.exit_code == 0 and json.loads(after.stdout)["site_id"] == "TEST01"
    grouped = cli("consent", "set", "P1", "consented", "--date", "2026-01-01", "--home", home)
    assert grouped.exit_code == 0, grouped.stderr
    assert cli("--home", home, "consent", "list", "--json", "--home", home).exit_code == 0  # the same twice: fine
    clash = cli("--home", home, "status", "--home", tmp_path / "other")
    assert clash.exit_code == 2 and "--home given twice" in clash.stderr


def test_home_after_the_command_beats_the_environment(tmp_path: Path, cli, monkeypatch) -> None:
    home = tmp_path / "home"
    assert cli("--home", home, "init", "--site-id", "TEST02").exit_code == 0
    monkeypatch.setenv("SFR_GATEWAY_HOME", str(tmp_path / "elsewhere"))
    result = cli("status", "--json", "--home", home)
    assert result.exit_code == 0 and json.loads(result.stdout)["site_id"] == "TEST02"


def test_the_sample_generator_is_a_command(tmp_path: Path) -> None:
    helped = subprocess.run([sys.executable, "-m", "sfr_gateway.sample", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert helped.returncode == 0 and "Usage: sfr-gateway sample [OPTIONS] OUTDIR" in helped.stdout
    out = tmp_path / "export"
    made = subprocess.run([sys.executable, "-m", "sfr_gateway", "sample", str(out), "--patients", "2", "--seed", "3",
                           "--chest-only", "--slices", "2", "--consent-csv", str(tmp_path / "c.csv"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout)
    assert report["files"] == 4 == len(list(out.rglob("*.dcm"))) and len(report["patients"]) == 2
    assert (tmp_path / "c.csv").read_text().count("consented") == 2
    again = subprocess.run([sys.executable, "-m", "sfr_gateway.sample", str(out)], capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 8 and "is not empty" in again.stderr


def test_tables_are_whole_when_redirected(tmp_path: Path, cli) -> None:
    home = tmp_path / "home"
    assert cli("--home", home, "init", "--site-id", "TEST01").exit_code == 0
    long_id = "PATIENT-" + "7" * 56  # 64 characters, the longest a Patient ID may be
    issuer = "ISSUER-OF-A-HOSPITAL-GROUP-WITH-A-LONG-NAME-" + "X" * 20
    assert cli("--home", home, "consent", "set", long_id, "consented", "--issuer", issuer, "--date", "2026-01-01",
               "--reason", "r" * 60).exit_code == 0
    listing = tmp_path / "list.txt"
    with listing.open("w") as fh:  # consent list > list.txt
        proc = subprocess.run([sys.executable, "-m", "sfr_gateway", "--home", str(home), "consent", "list"], stdout=fh,
                              stderr=subprocess.PIPE, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    text = listing.read_text()
    assert long_id in text and issuer in text and "…" not in text
    shown = tmp_path / "show.txt"
    with shown.open("w") as fh:
        subprocess.run([sys.executable, "-m", "sfr_gateway", "--home", str(home), "consent", "show", long_id],
                       stdout=fh, timeout=120, check=True)
    text = shown.read_text()
    assert "…" not in text and issuer in text and "r" * 60 in text


@pytest.mark.parametrize("as_json", [False, True])
def test_status_names_withdrawal_requests(tmp_path: Path, cli, as_json: bool) -> None:
    site = make_site(tmp_path, cli, patients=2, slices=2, seed=81)
    assert site.gateway("run").returncode == 0
    p = site.export.patients[0]
    assert cli("--home", site.home, "consent", "withdraw", p.patient_id, "--issuer", p.issuer).exit_code == 0
    if as_json:
        data = json.loads(site.gateway("status", "--json").stdout)["withdrawal_requests"]
        assert data["pending"] == 1 and data["pending_list"][0]["attempts"] == 0
        return
    text = site.gateway("status").stdout
    assert "withdrawal requests: 1 pending, 0 sent, 0 acknowledged" in text
    assert re.search(r"  request 1 for TEST01-\S+: queued \S+ \(0\.\d h ago\), 0 attempts", text), text
    assert site.gateway("upload").returncode == 0
    assert "withdrawal requests: 0 pending, 1 sent" in site.gateway("status").stdout


def on_a_terminal(args: list[str], columns: int = 160) -> tuple[int, str]:
    """Run a command with stdin, stdout and stderr on a pseudo-terminal; what the screen got,
    escape sequences removed."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50"}  # whatever the test runner's own terminal says
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, close_fds=True, env=env)
    os.close(slave)
    out, deadline = b"", time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=60)
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", out).decode("utf-8", "replace").replace("\r", "\n")
    return code, text


def test_progress_on_a_terminal_shows_totals_and_time_left(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=3, slices=30, seed=82)
    code, screen = on_a_terminal([sys.executable, "-m", "sfr_gateway", "--home", str(site.home), "run"])
    assert code == 0, screen
    assert re.search(r"scanning +━+ +90/90 files +elapsed \d+:\d\d:\d\d left \d+:\d\d:\d\d", screen), screen
    assert re.search(r"de-identifying and packaging +━+ +\d+/90 instances +elapsed \S+ left \S+", screen), screen
    assert re.search(r"uploading +━+ +[\d.]+/[\d.]+ [kM]B +elapsed \S+ left \S+", screen)
    assert re.search(r"\nscanned 90 files \(90 read, 0 unreadable\); released 90 instances", screen)  # no timestamp


def test_dry_run_says_which_studies(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=3, slices=2, seed=83)
    plain = site.gateway("run", "--dry-run")
    assert plain.returncode == 0, plain.stderr
    lines = [line for line in plain.stdout.splitlines() if line.startswith("  would release the study of ")]
    as_json = json.loads(site.gateway("run", "--dry-run", "--json").stdout)["release"]["would_release"]
    assert len(lines) == len(as_json["list"]) == as_json["studies"] == 3
    for line, study in zip(lines, as_json["list"], strict=True):
        (pseudonym,) = study["pseudonyms"]
        assert line == (f"  would release the study of {pseudonym}: 2 instances in 1 series "
                        f"({study['bytes'] / 1e6:.1f} MB) from {study['folder']}")
        assert study["folder"].startswith(str(site.export.root))
    # the pseudonyms are those the release then uses
    assert site.gateway("run").returncode == 0
    for study in as_json["list"]:
        found = site.gateway("mapping", "lookup", study["pseudonyms"][0], "--json")
        assert found.returncode == 0 and study["pseudonyms"][0] in found.stdout, found.stderr


def test_a_pseudonym_typed_in_lower_case_is_found(home: Path, export_copy: Path, cli) -> None:
    from mapping_fixtures import pipeline_record

    recorded = pipeline_record(home, export_copy)
    pseudonym = min(recorded.values())[0]
    upper = json.loads(cli("--home", home, "mapping", "lookup", pseudonym, "--json").stdout)["matches"]
    assert upper and upper[0]["pseudonym"] == pseudonym
    for typed in (pseudonym.lower(), f"  {pseudonym.lower()} ", pseudonym.capitalize()):
        found = cli("--home", home, "mapping", "lookup", typed, "--json")
        assert found.exit_code == 0 and json.loads(found.stdout)["matches"] == upper, typed
