-- Daemon state schema (generated from one description; the three dialects hold the same tables).
CREATE TABLE plugins (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL,
    plugin_unique_identifier VARCHAR(255) NOT NULL,
    plugin_id VARCHAR(255) NOT NULL,
    refers BIGINT NOT NULL DEFAULT 0,
    install_type VARCHAR(127) NOT NULL DEFAULT '',
    manifest_type VARCHAR(127) NOT NULL DEFAULT '',
    remote_declaration TEXT,
    source VARCHAR(127) NOT NULL DEFAULT '',
    UNIQUE (plugin_unique_identifier)
);
CREATE INDEX idx_plugins_plugin_id ON plugins (plugin_id);
CREATE INDEX idx_plugins_created_at ON plugins (created_at);

CREATE TABLE plugin_declarations (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL,
    plugin_unique_identifier VARCHAR(255) NOT NULL,
    plugin_id VARCHAR(255) NOT NULL,
    declaration TEXT NOT NULL,
    UNIQUE (plugin_unique_identifier)
);
CREATE INDEX idx_plugin_declarations_plugin_id ON plugin_declarations (plugin_id);
CREATE INDEX idx_plugin_declarations_created_at ON plugin_declarations (created_at);

CREATE TABLE plugin_installations (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL,
    tenant_id VARCHAR(64) NOT NULL,
    plugin_id VARCHAR(255) NOT NULL,
    plugin_unique_identifier VARCHAR(255) NOT NULL,
    runtime_type VARCHAR(127) NOT NULL DEFAULT '',
    endpoints_setups BIGINT NOT NULL DEFAULT 0,
    endpoints_active BIGINT NOT NULL DEFAULT 0,
    source VARCHAR(127) NOT NULL DEFAULT '',
    meta TEXT NOT NULL,
    UNIQUE (tenant_id, plugin_id)
);
CREATE INDEX idx_plugin_installations_plugin_unique_identifier ON plugin_installations (plugin_unique_identifier);
CREATE INDEX idx_plugin_installations_created_at ON plugin_installations (created_at);

CREATE TABLE provider_installations (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL,
    kind VARCHAR(127) NOT NULL DEFAULT '',
    tenant_id VARCHAR(64) NOT NULL,
    provider VARCHAR(255) NOT NULL,
    plugin_unique_identifier VARCHAR(255) NOT NULL,
    plugin_id VARCHAR(255) NOT NULL,
    UNIQUE (kind, tenant_id, plugin_id)
);
CREATE INDEX idx_provider_installations_tenant_id ON provider_installations (tenant_id);
CREATE INDEX idx_provider_installations_plugin_unique_identifier ON provider_installations (plugin_unique_identifier);
CREATE INDEX idx_provider_installations_created_at ON provider_installations (created_at);

CREATE TABLE install_tasks (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL,
    status VARCHAR(127) NOT NULL DEFAULT '',
    tenant_id VARCHAR(64) NOT NULL,
    total_plugins BIGINT NOT NULL DEFAULT 0,
    completed_plugins BIGINT NOT NULL DEFAULT 0,
    plugins TEXT NOT NULL,
    owner_node VARCHAR(64) NOT NULL,
    lease_until VARCHAR(40) NOT NULL,
    deadline_at VARCHAR(40) NOT NULL,
    expires_at VARCHAR(40)
);
CREATE INDEX idx_install_tasks_tenant_id ON install_tasks (tenant_id);
CREATE INDEX idx_install_tasks_status ON install_tasks (status);
CREATE INDEX idx_install_tasks_created_at ON install_tasks (created_at);

CREATE TABLE plugin_readme_records (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL,
    plugin_unique_identifier VARCHAR(255) NOT NULL,
    language VARCHAR(127) NOT NULL DEFAULT '',
    content TEXT NOT NULL,
    UNIQUE (plugin_unique_identifier, language)
);
CREATE INDEX idx_plugin_readme_records_created_at ON plugin_readme_records (created_at);

CREATE TABLE debugging_keys (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL,
    tenant_id VARCHAR(64) NOT NULL,
    debug_key VARCHAR(64) NOT NULL,
    expires_at VARCHAR(40) NOT NULL,
    UNIQUE (tenant_id),
    UNIQUE (debug_key)
);
CREATE INDEX idx_debugging_keys_created_at ON debugging_keys (created_at);

CREATE TABLE plugin_storage (
    tenant_id VARCHAR(64) NOT NULL,
    plugin_id VARCHAR(255) NOT NULL,
    storage_key VARCHAR(255) NOT NULL,
    value BYTEA NOT NULL,
    updated_at VARCHAR(40) NOT NULL,
    PRIMARY KEY (tenant_id, plugin_id, storage_key)
);
