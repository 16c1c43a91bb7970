-- One patient identity for consent (issue 14).
--
-- A refusal or withdrawal gets a scope when it is recorded: 'issuer' (it names an issuer the
-- exports use: that identity only) or 'all-issuers' (no issuer, or one the exports did not use:
-- the Patient ID under every issuer, for good). Other statuses keep ''. Existing restrictions are
-- given a scope by the same rule, against the issuers the index holds now (the config's declared
-- issuers are not known here: without them more is blocked, the safe direction).
ALTER TABLE consent_records ADD COLUMN scope TEXT NOT NULL DEFAULT ''
    CHECK (scope IN ('', 'issuer', 'all-issuers'));

DROP TRIGGER consent_records_append_only_update;

UPDATE consent_records SET scope = CASE
        WHEN issuer <> '' AND issuer IN (SELECT DISTINCT issuer FROM instances
                                         WHERE state = 'indexed' AND patient_id IS NOT NULL) THEN 'issuer'
        ELSE 'all-issuers' END
    WHERE status IN ('refused', 'withdrawn');

CREATE TRIGGER consent_records_append_only_update BEFORE UPDATE ON consent_records
BEGIN
    SELECT RAISE(ABORT, 'consent history is append-only: record a new event instead');
END;

-- Withdrawal requests: one pseudonym may need a second request (a refusal after a release
-- queues one; if the patient consents again and their data leaves again, a later withdrawal must
-- queue another). Deduplication moves to the code: a request is queued unless one for the same
-- pseudonym was created after that pseudonym's last batch. Same columns, same triggers.
CREATE TABLE withdrawal_requests_v2 (
    id               INTEGER PRIMARY KEY,
    pseudonym        TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    signature        TEXT NOT NULL,
    signature_format TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'acknowledged')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    sent_at          TEXT,
    last_error       TEXT
);

INSERT INTO withdrawal_requests_v2 (id, pseudonym, created_at, payload, signature, signature_format, state,
                                    attempts, sent_at, last_error)
    SELECT id, pseudonym, created_at, payload, signature, signature_format, state, attempts, sent_at, last_error
    FROM withdrawal_requests;

DROP TABLE withdrawal_requests;

ALTER TABLE withdrawal_requests_v2 RENAME TO withdrawal_requests;

CREATE INDEX withdrawal_requests_pseudonym ON withdrawal_requests (pseudonym, created_at);

CREATE TRIGGER withdrawal_requests_immutable BEFORE UPDATE OF pseudonym, created_at, payload, signature,
    signature_format ON withdrawal_requests
BEGIN
    SELECT RAISE(ABORT, 'a queued withdrawal request is immutable; only its delivery state changes');
END;

CREATE TRIGGER withdrawal_requests_no_delete BEFORE DELETE ON withdrawal_requests
BEGIN
    SELECT RAISE(ABORT, 'withdrawal requests are never deleted');
END;

CREATE TRIGGER withdrawal_requests_no_unacknowledge BEFORE UPDATE OF state ON withdrawal_requests
WHEN OLD.state = 'acknowledged' AND NEW.state <> 'acknowledged'
BEGIN
    SELECT RAISE(ABORT, 'an acknowledged withdrawal request stays acknowledged');
END;

-- Batches of a patient (withdrawals cancel them and name their pseudonyms).
CREATE INDEX batches_patient ON batches (patient_id, issuer);

-- When an upload of the batch last started: set in the transaction that re-checks the batch's
-- consent just before sending, so a refusal committed at the same time either holds the batch
-- or sees that it may have left (and queues a withdrawal request).
ALTER TABLE batches ADD COLUMN sending_at TEXT;
