-- Endpoint instances of plugins (keyed by tenant and plugin id, so they survive upgrades).
CREATE TABLE endpoints (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL,
    name VARCHAR(127) NOT NULL DEFAULT 'default',
    hook_id VARCHAR(127) NOT NULL,
    tenant_id VARCHAR(64) NOT NULL,
    user_id VARCHAR(64) NOT NULL,
    plugin_id VARCHAR(255) NOT NULL,
    expired_at VARCHAR(40) NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    settings TEXT NOT NULL,
    UNIQUE (hook_id)
);
CREATE INDEX idx_endpoints_tenant_id ON endpoints (tenant_id);
CREATE INDEX idx_endpoints_plugin_id ON endpoints (plugin_id);
CREATE INDEX idx_endpoints_created_at ON endpoints (created_at);
