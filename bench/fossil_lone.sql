-- pgbench script: what Fossil's appender sends PostgreSQL for a lone
-- single event (store.appendOneSQL, a group of one planned from the head
-- cache): one statement that checks and moves the head and the tree edge,
-- inserts the event row with its salt and tree hashes and notifies (the
-- stream's row is written only with its first event, which this script,
-- like a busy log, leaves out). Run with one client (the head check
-- follows :n, which each transaction advances) against a database with
-- all of Fossil's migrations, with plan_cache_mode=force_generic_plan as
-- the appender's connections (see bench/pgbench.sh). Hashes, salt and
-- edge are fixed 32-byte multiples; the document is raw_single.sql's.
\set s random(1, 1000)
\set n :n + 1
WITH h AS (
  UPDATE fossil_head SET last_number = :n / (last_number = :n - 1 AND tree_size = :n - 1)::int,
    tree_size = :n, tree_edge = coalesce('\x456dc4a30f94baec1c646546802c95d86d6c1ee8e3cd1a8f266c8583524209616d4252c17733a67fc7a05dd380925cc164e47701cf26599da7af161c68586ffdac735d6d4a2aa4b6807810d8ea1f64b6df34d59eaf044f0488f3ef84f71dc5ba329518cbae03ec522214a1804b20401efed8f7442d05553e266e9ae445819d566c5a3b19d546d613dce67437f008082f09af4171aad02c9622c87ee576974db150b2b66add9e530736649aec15d07b4d1f94df672c6a94152f70d6030d768d60bf6f2d2d5cc7df046b502d917658c9ad1d2f0a9f65a19ee721f281fab10daaa8'::bytea, tree_edge)
  RETURNING last_number
), e AS (
  INSERT INTO fossil_events (number, stream, sequence, id, source, type, subject, time, expect_ack, doc, salt, tree_hashes)
  SELECT last_number, 'bench/raw/s' || :s, :n, 'raw-' || :n, '/pgbench', 'bench.event', NULL, NULL, NULL,
    ('{"specversion":"1.0","id":"raw-' || :n || '",' || :rest::text)::json, '\x444e549af0b684ebf065725db3bbdfd5ac34e231f4562cce96259f37f7dd812e'::bytea, '\x122d4c17eeacdbfcf5eb433f63a75c4d97b001195507892c75f4acb58ec24269943d9a1a38364c1d5acd668939eaf441af6c2a380b5b8302dd82173dbe27aefb'::bytea FROM h
)
SELECT pg_notify('fossil_events', last_number::text) FROM h;
