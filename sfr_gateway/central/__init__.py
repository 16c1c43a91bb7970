"""The central host's side: its identity, its site registry, and opening a site's batch.

``central open`` trusts nothing until it is checked (see ``opener``): the signature by the key
registered for the site the signature names, the file name and SHA-256 it signs, the age
decryption of the very bytes that were verified (one private copy), then the tar stream against
the manifest, within limits on what a batch may unpack to.

Library use::

    from sfr_gateway.central import CentralHome, SiteRegistry, load_identities, open_batch

    home = CentralHome(Path("/srv/sfr-central"))
    opened = open_batch(Path("B.tar.zst.age"), load_identities(home.identity), SiteRegistry.load(home),
                        Path("/srv/received"), limits=home.limits())
"""

from __future__ import annotations

from .home import CentralHome, OpenLimits, default_central_home
from .identity import keygen, load_identities
from .opener import OpenedBatch, open_batch
from .requests import open_withdrawal_request
from .sites import SiteKey, SiteRegistry, add_site, parse_public_key, remove_site

__all__ = [
    "CentralHome",
    "OpenLimits",
    "OpenedBatch",
    "SiteKey",
    "SiteRegistry",
    "add_site",
    "default_central_home",
    "keygen",
    "load_identities",
    "open_batch",
    "open_withdrawal_request",
    "parse_public_key",
    "remove_site",
]
