-- A cheaper append (docs/PERFORMANCE.md, "One writer, one event at a time").
--
-- The tree's stored hashes (docs/PROOFS.md) that an event adds live in
-- its own row: event n (tlog record n-1) adds the hash at level l for
-- every l from 0 up to the number of trailing zero bits of n, at stored
-- hash indexes StoredHashIndex(0, n-1) + l, i.e. tree_hashes holds 32
-- bytes per level, lowest first (two hashes per event on average). The
-- hash at index i, at level l of node k (tlog.SplitStoredHashIndex), is
-- therefore found by the primary key, in the row of event (k+1) << l, at
-- offset l * 32. An append then writes no row besides its events, and an
-- inclusion proof still reads O(log n) rows. NULL for the events hashed
-- before this migration, by the tree builder or by an import, whose
-- hashes stay in fossil_tree_hashes.
ALTER TABLE fossil_events ADD COLUMN tree_hashes bytea;

-- The appender assigns numbers and sequences from 1 (and an import checks
-- that they run 1, 2, 3…); these checks cost every INSERT a parse of their
-- expressions from the catalogue.
ALTER TABLE fossil_events
    DROP CONSTRAINT fossil_events_number_positive,
    DROP CONSTRAINT fossil_events_sequence_positive;
