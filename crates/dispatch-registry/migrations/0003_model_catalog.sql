-- Schema version 3: the cached model catalog, as `dispatch models` last fetched it.

CREATE TABLE model_catalog (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    fetched_at_ms INTEGER NOT NULL,
    catalog       TEXT NOT NULL CHECK (json_valid(catalog))
);
