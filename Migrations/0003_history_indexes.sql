-- Indexes for the history read API (GET /api/v1/transactions, /charge-points/{id}/status-history).
-- Listings are keyset-paged newest first by (started_at, transaction_id): each filter walks one
-- index in exactly that order from the cursor and stops after one page, so a page costs the same
-- on 100 rows or 100,000, on the first page or the last.

-- No filter, or only from/to / status=completed.
CREATE INDEX transactions_history_idx ON transactions (started_at DESC, transaction_id DESC);
-- status=active: the few open transactions, without walking every completed one.
CREATE INDEX transactions_active_history_idx ON transactions (started_at DESC, transaction_id DESC)
    WHERE meter_stop IS NULL;
CREATE INDEX transactions_charge_point_history_idx ON transactions (charge_point_id, started_at DESC, transaction_id DESC);
CREATE INDEX transactions_connector_history_idx ON transactions (charge_point_id, connector_id, started_at DESC, transaction_id DESC);
-- connectorId without chargePointId.
CREATE INDEX transactions_connector_only_history_idx ON transactions (connector_id, started_at DESC, transaction_id DESC);
CREATE INDEX transactions_id_tag_history_idx ON transactions (id_tag, started_at DESC, transaction_id DESC);

-- Each of these is a prefix of one above.
DROP INDEX transactions_charge_point_idx;
DROP INDEX transactions_started_at_idx;
DROP INDEX transactions_id_tag_idx;

-- A transaction's anomalies (StopTransaction for it from the wrong charger, a second different stop, ...).
CREATE INDEX anomalies_transaction_idx ON anomalies ((detail ->> 'transactionId'));

-- A charge point's status history newest first by the charger's timestamp (arrival time when it sent none).
CREATE INDEX status_history_at_idx ON status_history (charge_point_id, (coalesce(status_at, received_at)) DESC, id DESC);
