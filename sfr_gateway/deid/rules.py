"""The engine's own rules: what it does where Table E.1-1 and the profile leave a choice.

Each constant is the wording that change records (and so the audit) and ``profile show`` use
to name the rule that decided, so a reviewer can find it in ``profiles/README.md``.
"""

from __future__ import annotations

#: Any action that keeps a value (C, K) on a value that cannot be cleaned as text.
BINARY_RULE = "binary value under C/K (cannot be cleaned as text)"
#: D on an empty value.
EMPTY_RULE = "empty value stays empty (D and Z invent no shared value)"
#: An element stored with VR UN whose tag the data dictionary knows.
UN_READ = "stored as UN, read with its dictionary VR"
#: Curve and overlay groups.
GRAPHICS_REMOVED = "Clean Graphics: the whole {kind} group is removed"
GRAPHICS_BASIC = "Basic X: the whole {kind} group is removed with its data"
#: Inputs sharing a SOP Instance UID (deidentify, audit; deid.sameness).
DUPLICATE_RULE = "duplicate SOP Instance UID"
#: Free text under Clean Descriptors / Clean Structured Content.
TEXT_CLEAN = "Clean Descriptors: identifying values of the instance removed from the text"

ENGINE_RULES: tuple[tuple[str, str], ...] = (
    ("IOD Type resolution", "combined codes (Z/D, X/Z, X/D, X/Z/D, X/Z/U*) resolve with the attribute's Type at its "
     "path in the file's own IOD (PS3.3; sfr_gateway/data/iod-types.json): Type 1 -> D (U), Type 2 -> Z, else the first"),
    (UN_READ, "an element stored as UN whose tag has one dictionary VR is read, acted on and written with that VR"),
    (BINARY_RULE, "C or K on OB/OW/OF/OD/OL/OV or UN of unknown kind removes the value; a zero dummy where the IOD "
     "makes the attribute Type 1"),
    (EMPTY_RULE, "D on an empty value keeps it empty (only the patient pseudonym is written even then); Z empties"),
    ("Clean Graphics", "an overlay (60xx) or curve (50xx) group is removed whole (bit planes and curves cannot be "
     "checked for text); Basic X on Overlay Data also removes the rest of its group"),
    (DUPLICATE_RULE, "inputs sharing a SOP Instance UID: an output is never overwritten; a copy of one instance "
     "(byte-identical, or the same dataset in another transfer syntax, pixels compared decoded) is released once and "
     "counted as a duplicate; another object, or one not shown to be the same, is quarantined naming the other path"),
    (TEXT_CLEAN, "names (every component, accents ignored), IDs, dates in written forms, addresses, institutions, "
     "physicians, operators and telephone numbers of the instance, at any depth, are removed from cleaned text"),
)
