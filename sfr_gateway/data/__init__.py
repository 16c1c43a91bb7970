"""Packaged reference data (PS3.15 tables, TCIA private tag KB); see README.md for provenance."""
