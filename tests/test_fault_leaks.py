"""Fault campaign, leaks: a full session on planted-PHI data, every word it prints or writes
scanned for the planted tokens (``FakePatient.tokens``); secrets never on a command line or in
an error; key files 0600 enforced; originals untouched by every command.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import stat
import subprocess
import sys
import unicodedata
from pathlib import Path

import click
import pytest
from faults_fixtures import ledger_rows, snapshot
from pipeline_fixtures import Site, site  # noqa: F401

from sfr_gateway.cli import COMMAND_MODULES

# tokens too generic to be a finding if seen alone (a 4-digit year is in every date we print)
MIN_TOKEN = 5


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().upper()


def planted(site: Site) -> set[str]:
    tokens = set()
    for patient in site.export.patients:
        for kind, values in patient.tokens.items():
            if kind == "date":
                continue  # study dates: the index and status print scan dates by design (no patient link)
            for value in values:  # names split in words; addresses, phones, IDs as whole values
                parts = value.replace("^", " ").split() if kind in ("name", "physician") else []
                for part in [value, *parts]:
                    if len(part) >= MIN_TOKEN:
                        tokens.add(_fold(part))
    return tokens


def _leaks(text: str, tokens: set[str]) -> list[str]:
    folded = _fold(text)
    return sorted(t for t in tokens if re.search(r"(?<![A-Z0-9])" + re.escape(t) + r"(?![A-Z0-9])", folded))


def test_a_whole_session_prints_and_writes_no_planted_phi(site: Site, cli, tmp_path: Path) -> None:
    tokens = planted(site)
    assert len(tokens) > 20
    before = snapshot(site.export.root)
    transcript: list[tuple[str, str]] = []

    def gw(*args: str | Path, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        proc = site.gateway("-vv", *args)
        transcript.append((" ".join(map(str, args)), proc.stdout + proc.stderr))
        if expect is not None:
            assert proc.returncode == expect, (args, proc.stderr[-1500:])
        assert snapshot(site.export.root) == before, args  # originals untouched by every command
        return proc

    csv = tmp_path / "consent.csv"
    csv.write_text("patient_id;issuer;status;date\n" + "".join(
        f"{p.patient_id};{p.issuer};consented;2026-01-15\n" for p in site.export.patients)
        + "BAD-LINE;;nonsense;2099-01-01\n", encoding="utf-8")
    gw("scan", site.export.root, "--json")
    gw("scan", site.export.root)
    gw("consent", "import", csv, expect=None)
    gw("run", "--dry-run", "--json")
    gw("run", "--json")
    gw("run")
    gw("status", "--json")
    gw("status")
    out = tmp_path / "deid"
    gw("deidentify", site.export.root, "--output", out, "--json", expect=None)
    gw("verify", out, "--against", site.export.root, "--json", expect=None)
    gw("verify", out, "--against", site.export.root, expect=None)
    if "audit" in COMMAND_MODULES and importlib.util.find_spec(COMMAND_MODULES["audit"]):
        gw("audit", site.export.root, "--format", "json", "--output", tmp_path / "audit.json", expect=None)
        gw("audit", site.export.root, expect=None)
    victim = site.export.patients[0]
    gw("consent", "withdraw", victim.patient_id, "--issuer", victim.issuer, "--reason", "courrier", expect=None)
    gw("run", "--json")
    # errors: a missing source, a bad status word, a destination that does not exist
    gw("scan", tmp_path / "nowhere", expect=None)
    gw("consent", "set", "SOMEONE", "maybe", expect=None)
    gw("deidentify", tmp_path / "nowhere", "--output", tmp_path / "o2", expect=None)

    # control: the local consent register lists local patient IDs by design; the detector sees them
    control = site.gateway("consent", "list")
    assert _leaks(control.stdout, tokens), "the leak detector found nothing where IDs are expected"

    leaks = {cmd: _leaks(text, tokens) for cmd, text in transcript}
    # the consent commands echo the local ID the operator typed (that is their job): only there
    for cmd in list(leaks):
        if cmd.startswith("consent withdraw"):
            leaks[cmd] = [t for t in leaks[cmd] if t != _fold(victim.patient_id)]
    assert {cmd: found for cmd, found in leaks.items() if found} == {}

    written = [p for p in (site.home / "quarantine").rglob("*.json")]
    written += [p for p in tmp_path.glob("*.json")]
    written += [p for p in (site.home / "outbox").rglob("*") if p.is_file() and p.suffix == ".json"]
    written += [p for p in site.dropbox.glob("*.json")]
    for path in written:
        assert _leaks(path.read_text(encoding="utf-8", errors="replace"), tokens) == [], path.name
    events = ledger_rows(site.home / "state.db", "SELECT * FROM events")
    assert events and _leaks(json.dumps(events, default=str, ensure_ascii=False), tokens) == []


#: Words saying a value is, or unlocks, a secret: in an option's name, flags, metavar or help.
SECRET_WORDS = frozenset({"token", "tokens", "secret", "secrets", "password", "passwords", "passwd", "passphrase",
                          "credential", "credentials", "hmac", "salt", "bearer", "auth", "apikey", "private"})
#: Words that need a second look: a key or an identity may be public (an age recipient, a key id).
KEY_WORDS = frozenset({"key", "keys", "identity", "identities"})
#: What says the value is public: then a key on the command line is fine.
PUBLIC_WORDS = frozenset({"public", "pubkey", "recipient", "recipients", "age1", "id", "fingerprint"})


#: Phrases where such a word means something else: verify's PHI token kinds (patient-name...).
NOT_SECRET_PHRASES = ("token kind",)


def _words(*texts: object) -> set[str]:
    text = " ".join(str(t) for t in texts if t).lower()
    for phrase in NOT_SECRET_PHRASES:
        text = text.replace(phrase, " ")
    return set(re.findall(r"[a-z0-9]+", text))


def secret_on_argv(param: click.Parameter) -> str | None:
    """Why ``param`` would put a secret on the command line (seen by every user in ``ps``), or None.

    Judged on what the option takes and what it says, not on its name alone: a flag or a file
    path is fine, a hidden prompt too; any other value is suspect when its name, flags, metavar or
    help speak of a secret, or of a key or identity without saying it is public."""
    if isinstance(param, click.Option) and (param.is_flag or param.count or param.hide_input):
        return None
    if isinstance(param.type, (click.Path, click.File)):
        return None
    said = _words(param.name, " ".join(param.opts), param.metavar, getattr(param, "help", None))
    if said & SECRET_WORDS:
        return f"takes a {param.type.name} value and speaks of {sorted(said & SECRET_WORDS)}"
    if said & KEY_WORDS and not said & PUBLIC_WORDS:
        return f"takes a {param.type.name} value and speaks of {sorted(said & KEY_WORDS)}, not of a public one"
    return None


def test_the_secret_judge_reads_types_and_help_not_only_names() -> None:
    @click.command()
    @click.option("--key", help="The site key.")
    @click.option("--hmac")
    @click.option("--salt-hex", type=int)
    @click.option("--value", help="The site's pseudonym secret, in hex.")
    @click.option("--pw", metavar="PASSWORD")
    @click.option("--key-file", type=click.Path(), help="File holding the site key.")
    @click.option("--recipient", help="The custodian's age public key (age1...).")
    @click.option("--key-id", help="Remove only this key.")
    @click.option("--password", prompt=True, hide_input=True)
    @click.option("--private/--no-private", help="A flag takes no value.")
    @click.option("--profile", help="Profile name.")
    @click.option("--ignore-kind", help="Token kind the site keeps on purpose.")
    @click.option("--bearer", help="Token kind, then the bearer token itself.")
    def command(**_: object) -> None:
        """A command with every kind of option."""

    flagged = {p.name for p in command.params if secret_on_argv(p)}
    assert flagged == {"key", "hmac", "salt_hex", "value", "pw", "bearer"}


def test_no_command_takes_a_secret_on_its_command_line() -> None:
    """A secret on argv shows in `ps` to every user: tokens, secrets, passwords, keys come from files."""
    seen = 0
    found: list[str] = []
    for module_name in sorted(set(COMMAND_MODULES.values())):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        stack = list(getattr(module, "COMMANDS", []))
        while stack:
            command = stack.pop()
            if isinstance(command, click.Group):
                stack.extend(command.commands.values())
            for param in command.params:
                seen += 1
                why = secret_on_argv(param)
                if why:
                    found.append(f"{command.name} {'/'.join(param.opts)}: {why}")
    assert found == []
    assert seen > 30


def test_run_with_a_token_shows_it_nowhere(site: Site, cli, tmp_path: Path) -> None:
    token = "tok-" + "7" * 40
    (tmp_path / "token").write_text(token)
    (tmp_path / "token").chmod(0o600)
    config = site.home / "config.toml"
    transport = f'[transport]\nbearer_token_file = "{tmp_path / "token"}"\nretries = 1\nbackoff_seconds = 0\n'
    config.write_text(config.read_text()
                      .replace("[transport]\n", transport, 1)
                      .replace('destination = ""', 'destination = "https://127.0.0.1:9/files/"', 1))
    site.consent_all(cli)
    proc = subprocess.Popen([sys.executable, "-m", "sfr_gateway", "--home", str(site.home), "-vv", "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_PROXY": "*"})
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes() if Path(f"/proc/{proc.pid}").exists() else b""
    out, err = proc.communicate(timeout=300)
    assert token.encode() not in cmdline
    assert token not in out + err
    assert "127.0.0.1" in err  # the failure names the destination, not the credentials


@pytest.mark.parametrize("name", ["keys", "pseudonym"])
def test_key_permissions_are_enforced(site: Site, name: str) -> None:
    keys = site.home / "keys"
    target = keys if name == "keys" else next(p for p in keys.iterdir() if "pseudonym" in p.name or "secret" in p.name)
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode & 0o077 == 0
    os.chmod(target, mode | 0o044)
    proc = site.gateway("run")
    assert proc.returncode == 4, proc.stderr
    assert "chmod" in proc.stderr
