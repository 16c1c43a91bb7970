"""Packaged de-identification profiles (data): ``sfr_gateway.profiles``."""
