-- Durable workflows: executions, their append-only history, the events waiting to be applied
-- (timers are events with a due time), and the calls to chargers they asked for.

CREATE TABLE workflow_executions (
    id              text PRIMARY KEY,
    workflow        text NOT NULL,
    version         integer NOT NULL,
    charge_point_id text,
    input           jsonb NOT NULL,
    state           jsonb NOT NULL,
    status          text NOT NULL CHECK (status IN ('RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    waiting_for     jsonb NOT NULL DEFAULT '[]'::jsonb,
    output          jsonb,
    error           jsonb,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    finished_at     timestamptz
);
CREATE INDEX workflow_executions_list_idx ON workflow_executions (workflow, status, created_at DESC);
CREATE INDEX workflow_executions_charge_point_idx ON workflow_executions (charge_point_id, created_at DESC);
CREATE INDEX workflow_executions_waiting_idx ON workflow_executions USING gin (waiting_for jsonb_path_ops) WHERE status = 'RUNNING';

CREATE TABLE workflow_history (
    id           bigserial PRIMARY KEY,
    execution_id text NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
    kind         text NOT NULL,
    detail       jsonb NOT NULL,
    at           timestamptz NOT NULL
);
CREATE INDEX workflow_history_execution_idx ON workflow_history (execution_id, id);

-- Events to apply, in id order per execution; a timer is an event due at available_at.
CREATE TABLE workflow_inbox (
    id           bigserial PRIMARY KEY,
    execution_id text NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
    event        jsonb NOT NULL,
    timer_name   text,
    available_at timestamptz NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX workflow_inbox_due_idx ON workflow_inbox (available_at, id);
CREATE INDEX workflow_inbox_execution_idx ON workflow_inbox (execution_id, id);

-- Calls to chargers, sent at least once under a stable key; a claimed call is leased until
-- next_attempt_at, so a worker that dies mid-call hands it to the next one.
CREATE TABLE workflow_outbox (
    id              bigserial PRIMARY KEY,
    execution_id    text NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
    key             text NOT NULL,
    charge_point_id text NOT NULL,
    action          text NOT NULL,
    payload         jsonb NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    give_up_at      timestamptz NOT NULL,
    done_at         timestamptz,
    created_at      timestamptz NOT NULL,
    UNIQUE (execution_id, key)
);
CREATE INDEX workflow_outbox_due_idx ON workflow_outbox (next_attempt_at) WHERE done_at IS NULL;
