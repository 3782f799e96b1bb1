-- pgbench script: one event per transaction, in the row shape of Fossil's
-- fossil_events table (the table is created from migrations/0001_events.up.sql).
-- This is what an event store without group commit pays per append: one
-- INSERT, one commit, one WAL flush. :rest is the JSON document after its
-- id, about 600 bytes with 500 bytes of data (see bench/pgbench.sh).
\set s random(1, 1000)
INSERT INTO fossil_events (number, stream, sequence, id, source, type, doc)
SELECT n, 'bench/raw/s' || :s::text, n, 'raw-' || n, '/pgbench', 'bench.event',
       ('{"specversion":"1.0","id":"raw-' || n || '",' || :rest::text)::json
FROM (SELECT nextval('raw_number') AS n) AS t;
