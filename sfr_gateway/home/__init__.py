"""The gateway's HOME and the process around it: settings, folders, the run lock, atomic file
writes, crash checkpoints, the log file, worker processes.

``config`` (settings, ``HomePaths``), ``lock``, ``fsutil``, ``faults``, ``logfile``, ``workers``
(the one worker-process pool, CPU count). The lowest layer after ``errors``: it imports nothing
else of the gateway, ``init`` excepted (it creates keys, ledger and mapping key, and so sits
above them; see docs/architecture.md).
"""
