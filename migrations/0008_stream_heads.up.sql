-- A stream's newest sequence is read from its events (the last entry of
-- the (stream, sequence) index) instead of being written to its row by
-- every append: an append to a known stream then writes no row besides
-- its event and the head (docs/PERFORMANCE.md, "One writer, one event at a
-- time"). A stream row is written once, with the stream's first event.
ALTER TABLE fossil_streams DROP COLUMN last_sequence;
