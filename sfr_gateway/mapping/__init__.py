"""The local re-identification table: pseudonym <-> original identifiers, encrypted at rest.

``store`` (write and look up), ``sync`` (fill it from released batches), ``regenerate``
(rebuild it from the exports and the key), ``export`` (an age-encrypted extract for the DPO).
"""
