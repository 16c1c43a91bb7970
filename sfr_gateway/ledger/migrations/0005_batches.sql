-- Release pipeline: batches (one study, or part of one, per batch) and the release of each
-- source instance into a batch. A batch row is written in state 'packaging' before its file,
-- so a crash between the two is recognised and undone on the next run (the file was never sent).

CREATE TABLE batches (
    batch_id        TEXT PRIMARY KEY,
    study_uid       TEXT NOT NULL,              -- local (original) study UID: never sent
    patient_id      TEXT NOT NULL,
    issuer          TEXT NOT NULL DEFAULT '',
    pseudonym       TEXT NOT NULL,
    new_study_uid   TEXT NOT NULL,
    part            INTEGER NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('packaging', 'packaged', 'acknowledged', 'failed', 'cancelled')),
    file_name       TEXT,
    sha256          TEXT,
    size            INTEGER,
    files           INTEGER,
    plaintext_bytes INTEGER,
    consent_status  TEXT,
    consent_date    TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    acknowledged_at TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    error           TEXT
);

CREATE INDEX batches_state ON batches (state);
CREATE INDEX batches_study ON batches (study_uid);

-- One row per source SOP instance that left the gate: in a batch, or refused with a reason.
CREATE TABLE releases (
    sop_instance_uid TEXT PRIMARY KEY,
    study_uid        TEXT NOT NULL,
    batch_id         TEXT REFERENCES batches (batch_id),
    state            TEXT NOT NULL CHECK (state IN ('packaged', 'quarantined')),
    reason           TEXT,
    released_at      TEXT NOT NULL
);

CREATE INDEX releases_batch ON releases (batch_id);
CREATE INDEX releases_study ON releases (study_uid);
