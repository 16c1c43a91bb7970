-- Core schema: the append-only audit trail, scans, and the index of every source instance.

CREATE TABLE events (
    id        INTEGER PRIMARY KEY,
    ts        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    host_pid  INTEGER NOT NULL,
    command   TEXT NOT NULL,
    action    TEXT NOT NULL,
    result    TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE scans (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    roots       TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'running'
);

-- One row per source file ever seen. path is the raw file-system bytes (names need not be UTF-8).
CREATE TABLE instances (
    id                 INTEGER PRIMARY KEY,
    path               BLOB NOT NULL UNIQUE,
    size               INTEGER NOT NULL,
    mtime_ns           INTEGER NOT NULL,
    state              TEXT NOT NULL,          -- indexed | unreadable | missing
    reason             TEXT,                   -- why unreadable
    sop_class_uid      TEXT,
    sop_instance_uid   TEXT,
    patient_id         TEXT,
    issuer             TEXT NOT NULL DEFAULT '',
    study_uid          TEXT,
    series_uid         TEXT,
    modality           TEXT,
    body_part          TEXT,
    study_date         TEXT,
    study_description  TEXT,
    series_description TEXT,
    protocol_name      TEXT,
    image_type         TEXT,
    series_number      INTEGER,
    frames             INTEGER,
    transfer_syntax    TEXT,
    eligible           INTEGER NOT NULL DEFAULT 0,
    exclusion          TEXT,                   -- why not eligible
    first_seen_scan    INTEGER REFERENCES scans(id),
    last_seen_scan     INTEGER REFERENCES scans(id),
    moved_from         BLOB
);

CREATE INDEX instances_sop ON instances (sop_instance_uid);
CREATE INDEX instances_study ON instances (study_uid);
CREATE INDEX instances_patient ON instances (patient_id, issuer);
CREATE INDEX instances_state ON instances (state, eligible);
