-- DICOM network: what the listener refused, and what `pull` asked the PACS for and got back.
-- No patient values beyond what the instance index already holds (UIDs, local patient ID).

-- One row per C-STORE the listener answered with a failure or warning status.
CREATE TABLE dicom_refusals (
    id               INTEGER PRIMARY KEY,
    at               TEXT NOT NULL,
    calling_ae       TEXT NOT NULL,
    address          TEXT NOT NULL,
    sop_class_uid    TEXT,
    sop_instance_uid TEXT,
    status           INTEGER NOT NULL,          -- the DIMSE status sent back (e.g. 0x0122, 0xC000)
    reason           TEXT NOT NULL,             -- not-admitted | truncated | uid-mismatch | ...
    detail           TEXT NOT NULL DEFAULT ''
);

CREATE INDEX dicom_refusals_at ON dicom_refusals (at);

-- One row per `pull`: the query and how it ended.
CREATE TABLE pull_runs (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    pacs          TEXT NOT NULL,                -- CALLED_AE@host:port
    method        TEXT NOT NULL,                -- move | get
    state         TEXT NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'complete', 'partial', 'failed')),
    patients      INTEGER NOT NULL DEFAULT 0,   -- releasable patients queried
    studies_found INTEGER NOT NULL DEFAULT 0,   -- eligible studies the PACS answered
    studies_asked INTEGER NOT NULL DEFAULT 0,   -- retrievals requested in this pull
    error         TEXT
);

-- One row per study `pull` decided to retrieve. A study in state 'complete' is never asked
-- again; 'pending' (asked, no final answer: the pull died), 'partial' and 'failed' are retried.
CREATE TABLE pull_studies (
    study_uid     TEXT PRIMARY KEY,
    patient_id    TEXT NOT NULL,
    issuer        TEXT NOT NULL DEFAULT '',
    study_date    TEXT NOT NULL DEFAULT '',
    series        TEXT NOT NULL DEFAULT '[]',   -- JSON list of the series UIDs asked ([] = whole study)
    expected      INTEGER,                      -- instances the PACS said the asked series hold
    state         TEXT NOT NULL CHECK (state IN ('pending', 'complete', 'partial', 'failed')),
    completed     INTEGER NOT NULL DEFAULT 0,   -- sub-operations of the last retrieval
    failed        INTEGER NOT NULL DEFAULT 0,
    warning       INTEGER NOT NULL DEFAULT 0,
    remaining     INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    first_run     INTEGER REFERENCES pull_runs (id),
    last_run      INTEGER REFERENCES pull_runs (id),
    asked_at      TEXT NOT NULL,
    finished_at   TEXT,
    error         TEXT
);

CREATE INDEX pull_studies_state ON pull_studies (state);
