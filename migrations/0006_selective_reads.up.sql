-- Selective reads (docs/ARCHITECTURE.md, hard problem 4): a template read
-- touches only the matching streams, each read from the cursor in number
-- order. Byte-wise collation like the other identifier indexes: the
-- appender writes this index for every event, and a locale collation would
-- cost a strcoll per comparison. The readers bound the stream with row
-- comparisons ((stream, number) > (name, after)), which only this index
-- serves, so their plans cannot fall back to the primary key.
--
-- On a large existing log, build both indexes with CREATE INDEX
-- CONCURRENTLY under these names before upgrading (docs/OPERATIONS.md);
-- IF NOT EXISTS then makes this migration a no-op.
CREATE INDEX IF NOT EXISTS fossil_events_stream_number
    ON fossil_events (stream COLLATE "C", number);

-- The stream catalogue's change log: the first event of every stream, in
-- number order, so that the streams created after a known head cost what
-- they are, not what the log is.
CREATE INDEX IF NOT EXISTS fossil_events_first_number
    ON fossil_events (number) INCLUDE (stream) WHERE sequence = 1;
