-- Each event's hashes become a run of fossil_tree_hashes starting at
-- StoredHashIndex(0, number-1) = 2(number-1) - popcount(number-1).
INSERT INTO fossil_tree_hashes (first_index, hashes)
SELECT 2 * (number - 1) - bit_count((number - 1)::bit(64)), tree_hashes
FROM fossil_events WHERE tree_hashes IS NOT NULL;
ALTER TABLE fossil_events DROP COLUMN tree_hashes;
ALTER TABLE fossil_events
    ADD CONSTRAINT fossil_events_number_positive CHECK (number > 0),
    ADD CONSTRAINT fossil_events_sequence_positive CHECK (sequence > 0);
