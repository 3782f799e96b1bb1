DROP TABLE IF EXISTS fossil_events;
DROP TABLE IF EXISTS fossil_streams;
DROP TABLE IF EXISTS fossil_head;
