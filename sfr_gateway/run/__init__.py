"""The cron pipeline: ``run`` = lock, scan, consent gate, release (de-identify and package per
study, a bulkhead each), upload.

``pipeline`` (the stages in order), ``release`` (per study: de-identify, batch, record),
``upload`` (deliver packaged batches), ``bulkhead`` (what a failure may stop), ``duplicates``
(files sharing a SOP Instance UID), ``held`` (what is held back, and why).
"""
