-- Subscriptions: push and pull delivery (docs/ARCHITECTURE.md, "Subscriptions").
-- definition is the subscription object as the client sent it, validated,
-- without id and sinkcredential; credential is the write-only sinkcredential.
-- position: every matching event up to it is delivered, parked or filtered
-- out. scanned >= position: every event up to it has been read, and each
-- matching event in (position, scanned] that is not done has a pending row.
CREATE TABLE fossil_subscriptions (
    id         text        COLLATE "C" PRIMARY KEY,
    definition jsonb       NOT NULL,
    credential jsonb,
    position   bigint      NOT NULL CHECK (position >= 0),
    scanned    bigint      NOT NULL CHECK (scanned >= position),
    state      text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled')),
    delivered  bigint      NOT NULL DEFAULT 0,
    lasterror  text,
    generation bigint      NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One process delivers a subscription at a time: the holder of its lease.
CREATE TABLE fossil_subscription_leases (
    id         text        COLLATE "C" PRIMARY KEY REFERENCES fossil_subscriptions (id) ON DELETE CASCADE,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Matching events above position that are read but not yet done.
CREATE TABLE fossil_subscription_pending (
    id        text        COLLATE "C" NOT NULL REFERENCES fossil_subscriptions (id) ON DELETE CASCADE,
    number    bigint      NOT NULL,
    stream    text        COLLATE "C" NOT NULL,
    attempts  integer     NOT NULL DEFAULT 0,
    next_try  timestamptz,
    lasterror text,
    PRIMARY KEY (id, number)
);

-- Events that could not be delivered. replay marks the rows a replay asked
-- to deliver again.
CREATE TABLE fossil_subscription_parked (
    id        text        COLLATE "C" NOT NULL REFERENCES fossil_subscriptions (id) ON DELETE CASCADE,
    number    bigint      NOT NULL,
    attempts  integer     NOT NULL,
    lasterror text        NOT NULL,
    parkedat  timestamptz NOT NULL DEFAULT now(),
    replay    boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (id, number)
);
