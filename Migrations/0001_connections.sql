-- Server processes (nodes) that share this database, with their liveness heartbeat.
CREATE TABLE nodes (
    node_id      text PRIMARY KEY,
    hostname     text NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL
);

-- Open charger WebSocket connections: one row per socket, removed when it closes.
-- A charge point has at most one row: the newest connection wins.
CREATE TABLE connections (
    connection_id   text PRIMARY KEY,
    charge_point_id text NOT NULL,
    path            text NOT NULL,
    query           jsonb NOT NULL DEFAULT '{}'::jsonb,
    headers         jsonb NOT NULL DEFAULT '{}'::jsonb,
    subprotocol     text,
    remote_address  text,
    node_id         text NOT NULL REFERENCES nodes (node_id) ON DELETE CASCADE,
    connected_at    timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);

CREATE UNIQUE INDEX connections_charge_point_id_key ON connections (charge_point_id);
CREATE INDEX connections_node_id_idx ON connections (node_id);
CREATE INDEX connections_expires_at_idx ON connections (expires_at);
