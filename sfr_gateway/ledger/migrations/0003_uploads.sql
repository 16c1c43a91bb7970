-- PLACEHOLDER from the mapping branch, only so that 0004_mapping applies while the transport
-- branch (which owns migration 0003) is not merged yet. When merging, keep the transport
-- branch's 0003_uploads.sql and drop this file's content.
SELECT 1;
