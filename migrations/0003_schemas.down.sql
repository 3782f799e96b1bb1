DROP TABLE IF EXISTS fossil_schemas;
