-- State this daemon keeps beyond the upstream tables (upstream holds it in Redis, or not at all).
-- The upstream daemon ignores these tables. Timestamps here are RFC 3339 text (UTC, nine fractional
-- digits), so text order is time order.
CREATE TABLE IF NOT EXISTS debugging_keys (id VARCHAR(64) NOT NULL PRIMARY KEY, created_at VARCHAR(40) NOT NULL, updated_at VARCHAR(40) NOT NULL, tenant_id VARCHAR(64) NOT NULL UNIQUE, debug_key VARCHAR(64) NOT NULL UNIQUE, expires_at VARCHAR(40) NOT NULL);
CREATE TABLE IF NOT EXISTS plugin_storage (tenant_id VARCHAR(64) NOT NULL, plugin_id VARCHAR(255) NOT NULL, storage_key VARCHAR(255) NOT NULL, value BYTEA NOT NULL, updated_at VARCHAR(40) NOT NULL, PRIMARY KEY (tenant_id, plugin_id, storage_key));
CREATE TABLE IF NOT EXISTS install_task_leases (task_id VARCHAR(64) NOT NULL PRIMARY KEY, owner_node VARCHAR(64) NOT NULL, lease_until VARCHAR(40) NOT NULL, deadline_at VARCHAR(40) NOT NULL, expires_at VARCHAR(40));
