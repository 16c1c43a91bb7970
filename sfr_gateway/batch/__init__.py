"""The batch format: a tar of de-identified files with manifest.json first, cut into zstd frames,
age-encrypted and minisign-signed, written atomically to the outbox.

``write`` builds a batch, ``tarzst`` the tar members and their zstd frames. The receiving side
(``central/``) opens what this writes.
"""
