-- Local pseudonym mapping, encrypted at rest (sfr_gateway.mapping).
-- Every identifying value is inside `sealed` (AES-256-GCM under HOME/keys/mapping.key);
-- the *_ref columns are keyed HMACs (same key file, separate derived key) so a lookup
-- finds its rows without decrypting the whole table. Nothing here is readable without the key.

CREATE TABLE mapping_studies (
    id            INTEGER PRIMARY KEY,
    study_ref     BLOB NOT NULL UNIQUE,    -- HMAC(index key, original Study Instance UID)
    patient_ref   BLOB NOT NULL,           -- HMAC(index key, patient key = ID + issuer)
    pid_ref       BLOB NOT NULL,           -- HMAC(index key, patient ID alone: lookup without issuer)
    pseudonym_ref BLOB NOT NULL,           -- HMAC(index key, patient pseudonym)
    sealed        BLOB NOT NULL,           -- nonce (12) || AES-GCM(JSON of the entry), AAD = study_ref
    key_id        TEXT NOT NULL,           -- fingerprint of the mapping key that sealed the row
    secret_fp     TEXT NOT NULL,           -- fingerprint of the pseudonym secret that derived it
    source        TEXT NOT NULL,           -- pipeline | regenerate
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE INDEX mapping_studies_patient ON mapping_studies (patient_ref);
CREATE INDEX mapping_studies_pid ON mapping_studies (pid_ref);
CREATE INDEX mapping_studies_pseudonym ON mapping_studies (pseudonym_ref);

-- What was actually sent: pseudonymous values only (they are what the central host holds).
CREATE TABLE mapping_released (
    id            INTEGER PRIMARY KEY,
    pseudonym     TEXT NOT NULL,
    new_study_uid TEXT NOT NULL,
    patient_ref   BLOB,                    -- HMAC(index key, patient key), to re-find the patient
    key_id        TEXT NOT NULL,           -- mapping key fingerprint behind patient_ref
    secret_fp     TEXT NOT NULL,           -- pseudonym secret fingerprint at release time
    batch_id      TEXT NOT NULL DEFAULT '',
    released_at   TEXT NOT NULL,
    UNIQUE (pseudonym, new_study_uid, batch_id)
);

CREATE INDEX mapping_released_study ON mapping_released (new_study_uid);
