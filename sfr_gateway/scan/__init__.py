"""Index what the sources hold: walk the export folders, read DICOM headers only, decide which
series are eligible (chest CT in the configured window), record it all in the ledger.

``walk`` (incremental by path, size and mtime, header reads in worker processes), ``header``
(the header-only reader, truncation checks), ``eligibility`` (the selection rules of config).
"""
