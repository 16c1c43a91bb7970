-- PLACEHOLDER from the transport branch, only so that 0003_uploads applies while the consent
-- branch (which owns migration 0002) is not merged yet. When merging, keep the consent
-- branch's 0002_consent.sql and drop this file's content.
SELECT 1;
