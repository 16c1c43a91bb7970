"""Private attributes: which to keep, and how, by (group, private creator, element low byte).

The block a creator reserves (``gggg,00xx`` -> elements ``gggg,xx00-xxFF``) can land anywhere;
matching uses the low byte only, as Table E.3.10-1 and TCIA's knowledge base do.
Dispositions: ``k`` keep, ``h`` remap as a UID, ``o`` shift as a date, ``oi`` shift a date
stored as an integer (seconds), ``d`` delete.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfr_gateway.deid import tables


@dataclass(frozen=True)
class PrivateDecision:
    """What to do with one private element and which rule decided it."""

    disposition: str
    rule: str


@dataclass(frozen=True)
class PrivatePolicy:
    """Compiled private-attribute policy of a profile."""

    retain_safe: bool
    use_tcia_keep: bool
    site_keep: tuple[tuple[tuple[int, str, int], str], ...] = ()

    def decide(self, group: int, creator: str | None, low: int) -> PrivateDecision:
        """Decide the fate of private element ``(group, creator, low byte)``."""
        if creator is None:
            return PrivateDecision("d", "private element without Private Creator (removed)")
        key = (group, creator.strip(), low)
        kb = tables.tcia_private_kb().get(key)
        transform = kb if kb in ("h", "o", "oi") else "k"
        for site_key, disp in self.site_keep:
            if site_key == key:
                return PrivateDecision(disp if disp != "k" else transform, "site override: private keep")
        if self.retain_safe and key in tables.safe_private():
            return PrivateDecision(transform, "PS3.15 E.3.10-1 safe private (Retain Safe Private)")
        if self.retain_safe and self.use_tcia_keep and kb in ("k", "h", "o", "oi"):
            return PrivateDecision(transform, f"TCIA private tag KB disposition {kb}")
        return PrivateDecision("d", "PS3.15 E.1-1 Private Attributes: Basic X")


def creator_of(ds_creators: dict[int, str], group: int, element: int) -> str | None:
    """Private creator of element ``(group, element)`` from ``{(block byte): creator}``."""
    block = element >> 8
    if block < 0x10:
        return None
    return ds_creators.get(block)
