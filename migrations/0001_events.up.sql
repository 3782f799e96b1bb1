-- The global log. fossil_head holds the newest event number; appenders lock
-- this single row for the length of their transaction, so event numbers are
-- assigned in commit order and never leave a hole.
CREATE TABLE fossil_head (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_number bigint  NOT NULL DEFAULT 0
);
INSERT INTO fossil_head DEFAULT VALUES;

-- Names and CloudEvents identities are compared byte by byte (COLLATE "C"):
-- they are identifiers, not prose, and every append probes their indexes,
-- where a locale's collation (even C.UTF-8 before PostgreSQL 17) costs a
-- strcoll call per comparison.

-- One row per stream: the sequence of its newest event.
CREATE TABLE fossil_streams (
    name          text COLLATE "C" PRIMARY KEY,
    last_sequence bigint      NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Every event ever collected. doc is the CloudEvent in compact structured
-- JSON without the server-assigned fossil* extensions, which live in columns.
CREATE TABLE fossil_events (
    number       bigint      PRIMARY KEY,
    stream       text        NOT NULL,
    sequence     bigint      NOT NULL,
    id           text COLLATE "C" NOT NULL,
    source       text COLLATE "C" NOT NULL,
    type         text        NOT NULL,
    subject      text,
    time         timestamptz,
    expect_ack   text,
    doc          json        NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fossil_events_number_positive CHECK (number > 0),
    CONSTRAINT fossil_events_sequence_positive CHECK (sequence > 0)
);

-- (stream, sequence) is unique; text_pattern_ops lets the same index serve
-- both exact stream reads and literal-prefix template replays (LIKE 'p%').
CREATE UNIQUE INDEX fossil_events_stream_sequence_key
    ON fossil_events (stream text_pattern_ops, sequence);

-- CloudEvents identity. id first so that acknowledgements, which name only
-- the id, use the same index.
CREATE UNIQUE INDEX fossil_events_id_source_key
    ON fossil_events (id, source);
