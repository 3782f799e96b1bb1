DROP TABLE IF EXISTS fossil_acks;
DROP TABLE IF EXISTS fossil_consumer_leases;
DROP TABLE IF EXISTS fossil_consumers;
