-- JSON Schemas registered per CloudEvents type. The document is kept as sent.
CREATE TABLE fossil_schemas (
    type       text        PRIMARY KEY,
    document   json        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
