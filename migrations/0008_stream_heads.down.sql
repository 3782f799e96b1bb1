ALTER TABLE fossil_streams ADD COLUMN last_sequence bigint;
UPDATE fossil_streams s
SET last_sequence = coalesce((SELECT max(sequence) FROM fossil_events e WHERE e.stream = s.name), 0);
ALTER TABLE fossil_streams ALTER COLUMN last_sequence SET NOT NULL;
