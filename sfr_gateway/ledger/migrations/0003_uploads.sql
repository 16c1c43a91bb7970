-- Uploads of batches to their destination (transport). One row per (destination, batch, part):
-- the tus upload URL and the last offset the server confirmed, saved before and after every
-- PATCH so that a new process resumes where the last one died, and the receipt once the server
-- confirmed the whole part. A row in state 'done' is never sent again.

CREATE TABLE uploads (
    destination    TEXT NOT NULL,              -- destination URL, without credentials
    batch_id       TEXT NOT NULL,
    part           TEXT NOT NULL CHECK (part IN ('data', 'signature')),
    url            TEXT NOT NULL,              -- tus upload URL, or the file URL in a drop folder
    upload_offset  INTEGER NOT NULL DEFAULT 0 CHECK (upload_offset >= 0),
    state          TEXT NOT NULL DEFAULT 'in_progress' CHECK (state IN ('in_progress', 'done')),
    receipt        TEXT,                       -- JSON transport.Receipt once done
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    completed_at   TEXT,
    PRIMARY KEY (destination, batch_id, part)
);

CREATE INDEX uploads_by_batch ON uploads (batch_id, part);
