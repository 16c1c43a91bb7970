"""The site's secrets: pseudonym secret, signing key, mapping key; their files (0600, refused
when others can read them), fingerprints, escrow and rotation.

``files`` makes, loads and checks the key files; ``admin`` is the operator's side (show, escrow,
restore, rotate). The key formats themselves (age, minisign) live in ``crypto/``.
"""
