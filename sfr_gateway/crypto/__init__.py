"""Cryptographic formats: age v1 encryption and minisign signatures."""
