DROP INDEX IF EXISTS fossil_events_first_number;
DROP INDEX IF EXISTS fossil_events_stream_number;
