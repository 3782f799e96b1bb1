-- Committed offsets of named consumers.
CREATE TABLE fossil_consumers (
    name         text        PRIMARY KEY,
    "offset"     bigint      NOT NULL CHECK ("offset" >= 0),
    committed_at timestamptz NOT NULL DEFAULT now()
);

-- Leases give one connection per consumer name across all processes. A lease
-- is renewed while its holder is connected; an expired lease is free.
CREATE TABLE fossil_consumer_leases (
    name       text        PRIMARY KEY,
    holder     uuid        NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Acknowledgements of single events by named consumers.
CREATE TABLE fossil_acks (
    number   bigint      NOT NULL REFERENCES fossil_events (number),
    consumer text        NOT NULL,
    acked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (number, consumer)
);
