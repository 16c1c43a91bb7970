"""Initialise a gateway HOME: folders, config.toml, keys, ledger. Never overwrites a key."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import AuthError, ConfigError, TransportError
from ..keys.files import (
    check_key_permissions,
    create_pseudonym_secret,
    create_signing_key,
    load_pseudonym_secret,
    load_signing_key,
    secret_fingerprint,
)
from ..ledger import open_ledger
from ..transport import destination_for
from .config import DEFAULT_DESTINATION_DIRNAME, HomePaths, render_config
from .fsutil import atomic_write_text

SITE_ID = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,31}$")
AGE_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")


@dataclass(frozen=True)
class InitResult:
    """What ``init`` created, and the public facts to send to the central host."""

    home: Path
    site_id: str
    created_secret: bool
    created_signing_key: bool
    secret_fingerprint: str
    signing_key_id: str
    signing_public_key: str


def check_destination(url: str) -> str:
    """Reach ``url`` before a HOME is made for it (``init --destination``), sending nothing.

    A host we cannot reach at all (refused, unknown name, timeout, no route) raises
    TransportError naming the cause: nothing is created. A host that answers but refuses our
    TLS verification or our (not yet configured) credentials is reachable: the returned note
    says what to set in ``[transport]``; '' when all is well."""

    try:
        with destination_for(url) as dest:
            dest.check()
    except AuthError:
        return ("the destination answers but refuses requests without credentials: set [transport] "
                "bearer_token_file (or client_cert) in config.toml, then `sfr-gateway destination check`")
    except TransportError as exc:
        if exc.cause == "tls":
            return (f"the destination answers but its certificate is not trusted here ({exc}): set [transport] "
                    "ca_bundle in config.toml, then `sfr-gateway destination check`")
        raise TransportError(f"{exc}; nothing was created (check the URL, or initialise anyway with --no-check "
                             "and run `sfr-gateway destination check` later)", exc.cause) from None
    return ""


def init_site(
    home: HomePaths,
    site_id: str,
    recipients: tuple[str, ...] = (),
    destination: str = "",
    exports: tuple[str, ...] = (),
) -> InitResult:
    """Create HOME for ``site_id``. An existing config.toml is an error; existing keys are kept."""
    if not SITE_ID.match(site_id):
        raise ConfigError(f"site id {site_id!r}: use 2-32 upper-case letters, digits or '-' (e.g. TEST01)")
    for r in recipients:
        if not AGE_RECIPIENT.match(r):
            raise ConfigError(f"central recipient {r[:12]}...: not an age X25519 public key (age1...)")
    if destination and not destination.startswith(("file://", "https://", "http://")):
        raise ConfigError("destination must be a file:// or https:// URL")
    if home.config.exists():
        raise ConfigError(f"{home.root} is already initialised; edit {home.config} to change settings")
    home.root.mkdir(parents=True, exist_ok=True)
    os.chmod(home.root, 0o700)
    check_key_permissions(home)
    folders = [home.quarantine, home.outbox]
    if not destination:  # the embedded default destination: a drop folder inside HOME
        folders.append(home.root / DEFAULT_DESTINATION_DIRNAME)
    for folder in folders:
        folder.mkdir(mode=0o700, exist_ok=True)
    created_secret = create_pseudonym_secret(home)
    created_key = create_signing_key(home)
    # The mapping's key (keys/mapping.key); imported here: the module pulls the deid package.
    from ..mapping.store import create_mapping_key

    create_mapping_key(home)
    with open_ledger(home.state_db) as ledger:
        atomic_write_text(
            home.config,
            render_config(site_id, recipients, destination, [str(Path(e).resolve()) for e in exports]),
            0o600,
        )
        ledger.record_event("init", "init", "ok", {
            "site_id": site_id, "created_secret": created_secret, "created_signing_key": created_key,
        })
    signing = load_signing_key(home)
    return InitResult(
        home=home.root,
        site_id=site_id,
        created_secret=created_secret,
        created_signing_key=created_key,
        secret_fingerprint=secret_fingerprint(load_pseudonym_secret(home)),
        signing_key_id=signing.key_id[::-1].hex().upper(),
        signing_public_key=signing.minisign_public(),
    )
