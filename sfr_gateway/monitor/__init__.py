"""Day-to-day operation: what tells an IT team, unattended, that the gateway is well or not.

``settings`` (``[log]``, ``[monitoring]``, ``[alerts]`` of config.toml), ``runs`` (each run's
outcome in the ledger), ``state`` (the site's state: what ``status`` prints), ``health`` (the
verdict: OK, WARNING or CRITICAL, as ``status --check`` says it), ``metrics`` (the Prometheus
textfile), ``alerts`` (e-mail, webhook), ``page`` (the HTML status page) and ``watch`` (what
``run`` does after each run with all of them). Nothing here may make a run fail or carry a
patient value.
"""
