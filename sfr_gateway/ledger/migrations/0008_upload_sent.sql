-- How far this gateway has SENT each upload (recorded before each PATCH leaves), beside the
-- offset the server confirmed: a server that later claims more than was ever sent (in
-- particular "complete" when the last bytes never left) is caught, across processes.
-- NULL on rows written before this column: only the confirmed offset is known to be sent.

ALTER TABLE uploads ADD COLUMN sent_upto INTEGER CHECK (sent_upto IS NULL OR sent_upto >= 0);
