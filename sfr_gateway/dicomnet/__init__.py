"""The gateway as a DICOM node: receive from the PACS (``listen``), fetch only what may leave
(``pull``), and remove received files once released (``retention``).

Only ``listen`` and ``pull`` import pynetdicom; ``store``, ``retention`` and ``statuses`` do
not, so a cron ``run`` that scans the incoming folder stays light.
"""
