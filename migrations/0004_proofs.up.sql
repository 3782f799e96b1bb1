-- The log's Merkle tree (docs/PROOFS.md).

-- Every event gets 32 random bytes that salt the digest of its data in its
-- leaf; replacing an event replaces its salt, so the erased data can be
-- neither recovered nor confirmed. NULL for events stored before this
-- migration until the tree builder gives them one.
ALTER TABLE fossil_events ADD COLUMN salt bytea;

-- tree_size: how many events (1..tree_size) are hashed into the tree;
-- equal to last_number once the tree is complete, and kept equal by the
-- appender in the same transaction as the events. tree_edge: the roots of
-- the complete subtrees of that tree (one 32-byte hash per bit set in
-- tree_size, lowest level first), which is all the next group needs to
-- hash its events and all a checkpoint needs for its root: the appender
-- reads it with the lock it takes anyway. replacements and
-- replacement_chain: the head of the hash chain of replacement records.
ALTER TABLE fossil_head
    ADD COLUMN tree_size bigint NOT NULL DEFAULT 0,
    ADD COLUMN tree_edge bytea NOT NULL DEFAULT '\x',
    ADD COLUMN replacements bigint NOT NULL DEFAULT 0,
    ADD COLUMN replacement_chain bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000';

-- The tree's stored hashes (golang.org/x/mod/sumdb/tlog's StoredHashIndex
-- order). Each group commit writes the contiguous run of hashes its
-- events add, in rows of at most 56 hashes (below the TOAST threshold),
-- each starting at first_index; the hash at index i is the 32 bytes at
-- offset (i - first_index) * 32 of the row that holds i.
CREATE TABLE fossil_tree_hashes (
    first_index bigint PRIMARY KEY,
    hashes      bytea  NOT NULL
);

-- Replacement records, one per replaced event, chained (docs/PROOFS.md).
CREATE TABLE fossil_replacements (
    index       bigint      PRIMARY KEY,
    number      bigint      NOT NULL,
    leaf_hash   bytea       NOT NULL,
    chain       bytea       NOT NULL,
    replaced_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fossil_replacements_number ON fossil_replacements (number);

-- The checkpoint signing key generated on first start when the server is
-- given no key file.
CREATE TABLE fossil_signing_key (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    skey       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
