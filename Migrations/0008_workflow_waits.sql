-- Which running executions wait for which charger messages, one row per (charge point, action),
-- kept by a trigger from workflow_executions.waiting_for. Every stored charger message looks here
-- before it is answered; an index probe on (charge_point_id, action) costs a few microseconds,
-- where the jsonb containment search of the GIN index it replaces took ~230 µs per message with a
-- thousand sessions running and made every execution update maintain a GIN index (BENCHMARKS.md).
CREATE TABLE workflow_waits (
    charge_point_id text NOT NULL,
    action          text NOT NULL,
    execution_id    text NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
    PRIMARY KEY (charge_point_id, action, execution_id)
);
CREATE INDEX workflow_waits_execution_idx ON workflow_waits (execution_id);

CREATE FUNCTION workflow_waits_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.waiting_for IS NOT DISTINCT FROM OLD.waiting_for AND NEW.status IS NOT DISTINCT FROM OLD.status THEN
            RETURN NULL;
        END IF;
        DELETE FROM workflow_waits WHERE execution_id = NEW.id;
    END IF;
    IF NEW.status = 'RUNNING' THEN
        INSERT INTO workflow_waits (charge_point_id, action, execution_id)
        SELECT DISTINCT f->>'chargePointID', f->>'action', NEW.id
        FROM jsonb_array_elements(NEW.waiting_for) f
        WHERE f->>'chargePointID' IS NOT NULL AND f->>'action' IS NOT NULL;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER workflow_waits_sync AFTER INSERT OR UPDATE OF waiting_for, status ON workflow_executions
    FOR EACH ROW EXECUTE FUNCTION workflow_waits_sync();

INSERT INTO workflow_waits (charge_point_id, action, execution_id)
SELECT DISTINCT f->>'chargePointID', f->>'action', e.id
FROM workflow_executions e, jsonb_array_elements(e.waiting_for) f
WHERE e.status = 'RUNNING' AND f->>'chargePointID' IS NOT NULL AND f->>'action' IS NOT NULL;

DROP INDEX workflow_executions_waiting_idx;
