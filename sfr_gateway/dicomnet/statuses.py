"""DIMSE status codes the gateway sends or reads (facts of PS3.4 Annex B, C and PS3.7 Annex C)."""

from __future__ import annotations

SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122  # Refused: SOP Class not supported
OUT_OF_RESOURCES = 0xA700  # Refused: out of resources (the sender retries later)
DATASET_MISMATCH = 0xA900  # Error: data set does not match SOP Class
CANNOT_UNDERSTAND = 0xC000  # Error: cannot understand
PENDING = (0xFF00, 0xFF01)
CANCEL = 0xFE00

# C-MOVE / C-GET failures the PACS may answer (PS3.4 C.4.2.1.5, C.4.3.1.4).
MOVE_DESTINATION_UNKNOWN = 0xA801
RETRIEVE_OUT_OF_RESOURCES = (0xA701, 0xA702)
SUBOPS_WARNING = 0xB000  # sub-operations complete, one or more failures or warnings
IDENTIFIER_MISMATCH = 0xA900
UNABLE_TO_PROCESS = range(0xC000, 0xD000)

# Why the listener refused an instance (keys of the refusal records), with the status sent.
REFUSALS = {
    "not-admitted": (SOP_CLASS_NOT_SUPPORTED, "SOP Class is not an image the de-identification profile admits"),
    "truncated": (CANNOT_UNDERSTAND, "the data set ends before a declared element does"),
    "unparseable": (CANNOT_UNDERSTAND, "the data set cannot be parsed"),
    "missing-uid": (CANNOT_UNDERSTAND, "no SOP Instance UID"),
    "bad-uid": (CANNOT_UNDERSTAND, "a Study, Series or SOP Instance UID is not a valid UID"),
    "uid-mismatch": (DATASET_MISMATCH, "the SOP Class or Instance UID differs from the C-STORE request's"),
    "out-of-resources": (OUT_OF_RESOURCES, "the incoming folder cannot be written (disk full?)"),
}


def is_pending(status: int) -> bool:
    return status in PENDING


def describe(status: int) -> str:
    """A short English name of a status, for messages."""
    if status == SUCCESS:
        return "success"
    if status in PENDING:
        return "pending"
    if status == CANCEL:
        return "cancelled"
    if status == MOVE_DESTINATION_UNKNOWN:
        return "move destination unknown"
    if status in RETRIEVE_OUT_OF_RESOURCES or status == OUT_OF_RESOURCES:
        return "out of resources"
    if status == SOP_CLASS_NOT_SUPPORTED:
        return "SOP Class not supported"
    if status == IDENTIFIER_MISMATCH:
        return "identifier does not match SOP Class"
    if status in UNABLE_TO_PROCESS:
        return "unable to process"
    if status & 0xF000 == 0xB000:
        return "warning"
    return "failure"
