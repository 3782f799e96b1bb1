-- pgbench script: 100 events per transaction in one multi-row INSERT, in the
-- row shape of Fossil's fossil_events table: the ceiling for batches of 100.
\set s random(1, 1000)
INSERT INTO fossil_events (number, stream, sequence, id, source, type, doc)
SELECT n, 'bench/raw/s' || :s::text, n, 'raw-' || n, '/pgbench', 'bench.event',
       ('{"specversion":"1.0","id":"raw-' || n || '",' || :rest::text)::json
FROM (SELECT nextval('raw_number') AS n FROM generate_series(1, 100)) AS t;
