"""Consent: the registry of what each patient said, the one identity rule that decides whom a
record applies to, the release gate, CSV import, and withdrawal requests for the central host.

``registry`` (the public entry: record, show, list, gate), ``policy`` (statuses, modes, checks:
pure rules), ``identity`` (which scanned identities a record covers), ``record`` (recording one
status in a transaction), ``gate`` (the release decision per eligible study, coverage),
``csvimport`` (a spreadsheet export), ``withdrawal`` (what a refusal or withdrawal does beyond
its record: cancel what has not left, queue signed requests).
"""
