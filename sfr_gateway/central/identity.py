"""The central host's age identity: make one (``central keygen``), read one (refused if exposed)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from ..crypto.age import Identity, identity_file_text, parse_identities
from ..errors import KeyFileError
from ..keys.files import read_secret_file


def keygen(output: Path | None = None) -> tuple[Identity, str]:
    """A new age identity; written to ``output`` (0600, never overwritten) when given.

    Returns the identity and the identity-file text.
    """
    identity = Identity.generate()
    text = identity_file_text(identity, dt.datetime.now(dt.UTC))
    if output is not None:
        output = Path(output)
        try:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyFileError(f"{output} already exists: refusing to overwrite a key") from None
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    return identity, text


def load_identities(path: Path) -> list[Identity]:
    """Identities from an age identity file (ours or age-keygen's); refused, like a key, when
    group or others can read it (KeyFileError, exit 4)."""
    try:
        return parse_identities(read_secret_file(path, "identity file").decode("ascii"))
    except UnicodeDecodeError as exc:
        raise KeyFileError(f"cannot read identity file {path}: {exc.__class__.__name__}") from None
