-- What a run held back instead of stopping (issue 23), and SOP Instance UIDs shared by several files.

-- A study whose release failed (an unexpected error in the engine, a refused ledger record, a
-- packaging failure): nothing of its failed batch was recorded; it is retried at every run and
-- its row goes when it succeeds. No patient value: the local study UID (never sent), a path.
CREATE TABLE held_studies (
    study_uid   TEXT PRIMARY KEY,
    pseudonym   TEXT NOT NULL DEFAULT '',
    example     BLOB,                       -- a source file of the study, to find it in the export
    files       INTEGER NOT NULL DEFAULT 0, -- instances that were to be released
    reason      TEXT NOT NULL,              -- engine-error | ledger-conflict | package-error | source-error
    detail      TEXT NOT NULL DEFAULT '',   -- exception type and where, constraint, errno; never values
    first_at    TEXT NOT NULL,
    last_at     TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 1
);

-- SOP Instance UIDs that scan found in more than one indexed file (candidates: a move also shows
-- one file at two paths until the scan ends; readers count the files that still share it).
CREATE TABLE shared_uids (
    sop_instance_uid TEXT PRIMARY KEY
);

INSERT INTO shared_uids (sop_instance_uid)
    SELECT sop_instance_uid FROM instances
    WHERE state = 'indexed' AND sop_instance_uid IS NOT NULL
    GROUP BY sop_instance_uid HAVING COUNT(*) > 1;

-- For a file that shares its SOP Instance UID with the UID's first indexed eligible file (the one
-- released): 'identical' (released once, as that one) or 'conflict' (held back, naming it).
-- Valid while the file keeps its size and mtime and the other file its path.
CREATE TABLE duplicate_files (
    path             BLOB PRIMARY KEY,
    size             INTEGER NOT NULL,
    mtime_ns         INTEGER NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    study_uid        TEXT NOT NULL,
    other_path       BLOB NOT NULL,
    verdict          TEXT NOT NULL CHECK (verdict IN ('identical', 'conflict')),
    detail           TEXT NOT NULL DEFAULT '',
    decided_at       TEXT NOT NULL
);

CREATE INDEX duplicate_files_uid ON duplicate_files (sop_instance_uid);
