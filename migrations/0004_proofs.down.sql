DROP TABLE fossil_signing_key;
DROP TABLE fossil_replacements;
DROP TABLE fossil_tree_hashes;
ALTER TABLE fossil_head
    DROP COLUMN tree_size,
    DROP COLUMN tree_edge,
    DROP COLUMN replacements,
    DROP COLUMN replacement_chain;
ALTER TABLE fossil_events DROP COLUMN salt;
