"""sfr-gateway: site-side de-identification gateway for the SFR national chest-CT database."""

__version__ = "0.1.0"
