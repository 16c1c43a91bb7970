-- PLACEHOLDER until the mapping branch (which owns migration 0004) is merged: keep theirs.
SELECT 1;
