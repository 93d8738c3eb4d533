//! Daemon configuration: every environment variable the daemon reads, with the upstream names.
//!
//! Each setting is declared once in the [`settings!`] table below: its variable name (plus any
//! fallback names), its default and one doc line. The [`Settings`] struct, its parser, the
//! documentation table ([`SETTINGS`], rendered into the README's configuration section) and the local
//! runtime's settings ([`crate::runtime::RuntimeConfig::from_settings`]) all come from that one
//! declaration, so no variable is read in two places. This module only parses: it must not open
//! files, sockets or databases (the server does that at start-up).

use std::collections::HashMap;
use std::path::PathBuf;

/// Every `PLUGIN_STORAGE_TYPE` value (upstream's names).
pub const STORAGE_TYPES: &[&str] =
    &["local", "aws_s3", "tencent_cos", "azure_blob", "gcs", "aliyun_oss", "huawei_obs", "volcengine_tos", "baidu_bos"];

/// How much isolation plugins get (`PLUGIN_SANDBOX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxLevel {
    /// No layer: plugins run like the daemon (its uid, its view of the file system).
    Off,
    /// Every layer the host offers; a missing one is reported, not fatal.
    #[default]
    BestEffort,
    /// Every layer, or the plugin is not started.
    Strict,
}

impl SandboxLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxLevel::Off => "off",
            SandboxLevel::BestEffort => "best_effort",
            SandboxLevel::Strict => "strict",
        }
    }
}

impl FromSetting for SandboxLevel {
    fn from_setting(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "off" | "none" | "false" | "0" => Ok(SandboxLevel::Off),
            "" | "best_effort" | "besteffort" => Ok(SandboxLevel::BestEffort),
            "strict" => Ok(SandboxLevel::Strict),
            other => Err(format!("expected off, best_effort or strict, got {other:?}")),
        }
    }
}

/// One documented setting: its environment variable, the names read when it is unset, its default
/// (as text), meaning and table group.
#[derive(Debug, Clone, Copy)]
pub struct SettingDoc {
    pub name: &'static str,
    /// Names tried, in order, when `name` is unset or empty (e.g. `http_proxy` for `HTTP_PROXY`).
    pub fallbacks: &'static [&'static str],
    pub default: &'static str,
    pub doc: &'static str,
    /// The heading the setting is listed under.
    pub group: &'static str,
}

/// A configuration value that could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value {value:?} for {name}: {reason}")]
    Invalid { name: &'static str, value: String, reason: String },
}

/// How a setting's text becomes its typed value.
pub trait FromSetting: Sized {
    fn from_setting(text: &str) -> Result<Self, String>;
}

impl FromSetting for String {
    fn from_setting(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
}

impl FromSetting for Option<String> {
    fn from_setting(text: &str) -> Result<Self, String> {
        Ok(if text.is_empty() { None } else { Some(text.to_string()) })
    }
}

impl FromSetting for bool {
    fn from_setting(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "t" | "yes" | "on" => Ok(true),
            "false" | "0" | "f" | "no" | "off" | "" => Ok(false),
            other => Err(format!("expected true or false, got {other:?}")),
        }
    }
}

macro_rules! impl_from_setting_num {
    ($($t:ty),*) => {$(
        impl FromSetting for $t {
            fn from_setting(text: &str) -> Result<Self, String> {
                text.trim().parse::<$t>().map_err(|e| e.to_string())
            }
        }
    )*};
}
impl_from_setting_num!(u16, u32, u64, usize, i64, f64);

impl FromSetting for Option<u16> {
    fn from_setting(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        text.trim().parse::<u16>().map(Some).map_err(|e| e.to_string())
    }
}

/// Reads one setting: the first non-empty value of `doc.name` and its fallbacks, else the default.
/// A value that does not parse is recorded in `invalid` and the default is used instead.
fn read_setting<T: FromSetting>(doc: &SettingDoc, lookup: &dyn Fn(&str) -> Option<String>, invalid: &mut Vec<ConfigError>) -> T {
    let given = std::iter::once(doc.name)
        .chain(doc.fallbacks.iter().copied())
        .find_map(|name| lookup(name).filter(|value| !value.is_empty()));
    if let Some(text) = given {
        match T::from_setting(&text) {
            Ok(value) => return value,
            Err(reason) => invalid.push(ConfigError::Invalid { name: doc.name, value: text, reason }),
        }
    }
    // The defaults of the table are checked by `defaults_parse_and_validate`.
    T::from_setting(doc.default).unwrap_or_else(|reason| panic!("the default {:?} of {} does not parse: {reason}", doc.default, doc.name))
}

macro_rules! settings {
    ($( $group:literal {
        $( $field:ident : $ty:ty = $env:literal $(| $fallback:literal)*, $default:literal, $doc:literal; )*
    } )*) => {
        /// Every setting of the daemon, typed. Build it with [`Settings::from_env`],
        /// [`Settings::from_lookup`] or [`Settings::from_map`]; `Settings::default()` holds every default.
        #[derive(Debug, Clone)]
        pub struct Settings {
            $( $( #[doc = $doc] pub $field: $ty, )* )*
        }

        /// The documentation table of every setting, in declaration order.
        pub const SETTINGS: &[SettingDoc] = &[
            $( $( SettingDoc {
                name: $env, fallbacks: &[$($fallback),*], default: $default, doc: $doc, group: $group,
            }, )* )*
        ];

        impl Settings {
            /// Reads every setting through `lookup` (an unset or empty variable takes the default). Values
            /// that do not parse are returned beside the settings, which hold the default in their place.
            pub fn from_lookup_lenient(lookup: &dyn Fn(&str) -> Option<String>) -> (Self, Vec<ConfigError>) {
                let mut invalid = Vec::new();
                let mut docs = SETTINGS.iter();
                let mut next_doc = || docs.next().expect("SETTINGS has one entry per field");
                let settings = Settings {
                    $( $( $field: read_setting::<$ty>(next_doc(), lookup, &mut invalid), )* )*
                };
                (settings, invalid)
            }
        }
    };
}

settings! {
    "Server / HTTP" {
        server_host: String = "SERVER_HOST", "0.0.0.0", "Address the HTTP API listens on.";
        server_port: u16 = "SERVER_PORT", "5002", "Port the HTTP API listens on.";
        server_key: Option<String> = "SERVER_KEY", "", "API key expected in `X-Api-Key`; when unset a random key is generated on first start, stored in `<PLUGIN_STORAGE_LOCAL_ROOT>/server_key` and printed.";
        server_tz: String = "SERVER_TZ", "UTC", "Time zone of timestamps (only UTC is rendered at present).";
        gin_mode: String = "GIN_MODE", "release", "Accepted for compatibility; has no effect.";
        platform: String = "PLATFORM", "local", "Runtime platform: `local` or `serverless`.";
        routine_pool_size: usize = "ROUTINE_POOL_SIZE", "10000", "Background jobs (plugin installs and upgrades) running at the same time; more wait their turn.";
        plugin_endpoint_enabled: bool = "PLUGIN_ENDPOINT_ENABLED", "true", "Serve public plugin endpoints under `/e/`.";
        plugin_webhook_enabled: bool = "PLUGIN_WEBHOOK_ENABLED", "false", "Accepted for compatibility; unused.";
        admin_api_enabled: bool = "ADMIN_API_ENABLED", "false", "Enable the admin API (`X-Admin-Api-Key`).";
        admin_api_key: Option<String> = "ADMIN_API_KEY", "", "Admin API key (at least 10 characters).";
        pprof_enabled: bool = "PPROF_ENABLED", "false", "Accepted for compatibility; there is no pprof in this implementation.";
        prometheus_enabled: bool = "PROMETHEUS_ENABLED", "true", "Serve Prometheus metrics at `/metrics`.";
        health_api_log_enabled: bool = "HEALTH_API_LOG_ENABLED", "true", "Log requests to `/health/check`.";
        log_level: String = "LOG_LEVEL", "INFO", "Log level (`DEBUG`, `INFO`, `WARN`, `ERROR`) unless `RUST_LOG` is set.";
        log_output_format: String = "LOG_OUTPUT_FORMAT", "text", "Log format: `text` or `json` (one JSON object per line). Either way every line of a request names its `trace_id`: the caller's W3C `traceparent`, else a new one; it is passed on to plugin sessions and, as `traceparent`, to Dify's inner API.";
        log_file: Option<String> = "LOG_FILE", "", "Accepted for compatibility; logs go to stderr.";
        display_cluster_log: bool = "DISPLAY_CLUSTER_LOG", "false", "Log cluster coordination events.";
        http_proxy: Option<String> = "HTTP_PROXY" | "http_proxy", "", "Proxy for outgoing HTTP requests (uv and plugins).";
        https_proxy: Option<String> = "HTTPS_PROXY" | "https_proxy", "", "Proxy for outgoing HTTPS requests (uv and plugins).";
        no_proxy: Option<String> = "NO_PROXY" | "no_proxy", "", "Hosts that bypass the proxy.";
    }
    "Dify inner API" {
        dify_inner_api_url: String = "DIFY_INNER_API_URL", "http://127.0.0.1:5001", "Base URL of the Dify API's inner endpoints (backwards invocations).";
        dify_inner_api_key: Option<String> = "DIFY_INNER_API_KEY", "", "Key sent as `X-Inner-Api-Key` to the Dify API.";
        dify_invocation_connection_idle_timeout: u64 = "DIFY_INVOCATION_CONNECTION_IDLE_TIMEOUT", "120", "Idle timeout of connections to the Dify API, seconds.";
        dify_backwards_invocation_write_timeout: u64 = "DIFY_BACKWARDS_INVOCATION_WRITE_TIMEOUT", "5000", "Connect timeout of a backwards invocation to the Dify API, milliseconds.";
        dify_backwards_invocation_read_timeout: u64 = "DIFY_BACKWARDS_INVOCATION_READ_TIMEOUT", "240000", "Total limit of a backwards invocation to the Dify API, milliseconds.";
        response_max_buffer_size: usize = "RESPONSE_MAX_BUFFER_SIZE", "31457280", "Largest frame of a streamed Dify API reply, bytes.";
    }
    "Database" {
        db_type: Option<String> = "DB_TYPE", "", "`sqlite`, `postgresql`, `pgbouncer` or `mysql` (`oceanbase`/`seekdb` = mysql); default: `sqlite` when `DB_HOST` is unset, else `postgresql`.";
        db_sqlite_path: String = "DB_SQLITE_PATH", "dify_plugin_daemon.db", "SQLite database file (relative to the current directory) for `DB_TYPE=sqlite`.";
        db_username: String = "DB_USERNAME", "postgres", "Database user.";
        db_password: String = "DB_PASSWORD", "", "Database password.";
        db_host: Option<String> = "DB_HOST", "", "Database host; unset selects the embedded SQLite database.";
        db_port: Option<u16> = "DB_PORT", "", "Database port (default 5432 for PostgreSQL, 3306 for MySQL).";
        db_database: String = "DB_DATABASE", "dify_plugin", "Database name; created if it does not exist.";
        db_default_database: Option<String> = "DB_DEFAULT_DATABASE", "", "Database used to create `DB_DATABASE` (default `postgres` or `mysql`).";
        db_ssl_mode: String = "DB_SSL_MODE", "disable", "`disable` or `require`.";
        db_max_idle_conns: u32 = "DB_MAX_IDLE_CONNS", "10", "Accepted for compatibility; idle connections are closed after ten minutes.";
        db_max_open_conns: u32 = "DB_MAX_OPEN_CONNS", "30", "Largest number of open connections.";
        db_conn_max_lifetime: u64 = "DB_CONN_MAX_LIFETIME", "3600", "Connection lifetime, seconds.";
        db_extras: Option<String> = "DB_EXTRAS", "", "Extra PostgreSQL start-up options (sent as `options`, e.g. `-c search_path=plugins`).";
        db_charset: Option<String> = "DB_CHARSET", "", "Accepted for compatibility; connections always use UTF-8 (utf8mb4 on MySQL).";
        db_gorm_log_level: Option<String> = "DB_GORM_LOG_LEVEL", "", "Accepted for compatibility; unused.";
        db_connect_timeout: u64 = "DB_CONNECT_TIMEOUT", "5", "Connect timeout, seconds.";
        db_read_timeout: u64 = "DB_READ_TIMEOUT", "30", "Accepted for compatibility; statements are bounded by the pool acquire timeout.";
        db_write_timeout: u64 = "DB_WRITE_TIMEOUT", "30", "Accepted for compatibility; statements are bounded by the pool acquire timeout.";
    }
    "Redis" {
        redis_host: Option<String> = "REDIS_HOST", "", "Redis host; set (with the same `REDIS_KEY_PREFIX`) on every node of a cluster sharing one database and bucket (docs/cluster.md); unset (and no `REDIS_USE_SENTINEL`): a single node with in-process coordination. Ignored with `REDIS_USE_SENTINEL`.";
        redis_port: u16 = "REDIS_PORT", "6379", "Redis port (ignored with `REDIS_USE_SENTINEL`).";
        redis_username: Option<String> = "REDIS_USERNAME", "", "Redis user (also for the master found through Sentinel).";
        redis_password: Option<String> = "REDIS_PASSWORD", "", "Redis password (also for the master found through Sentinel).";
        redis_db: u32 = "REDIS_DB", "0", "Redis database number (also on the master found through Sentinel).";
        redis_key_prefix: String = "REDIS_KEY_PREFIX", "plugin_daemon", "Prefix of every Redis key and channel.";
        redis_use_ssl: bool = "REDIS_USE_SSL", "false", "Connect to Redis over TLS (with `REDIS_USE_SENTINEL`: to the sentinels and the master).";
        redis_ssl_cert_reqs: Option<String> = "REDIS_SSL_CERT_REQS", "", "`CERT_NONE`, `CERT_OPTIONAL` or `CERT_REQUIRED`.";
        redis_ssl_ca_certs: Option<String> = "REDIS_SSL_CA_CERTS", "", "CA certificates file for Redis TLS.";
        redis_use_azure_managed_identity: bool = "REDIS_USE_AZURE_MANAGED_IDENTITY", "false", "Azure managed identity for Redis.";
        redis_use_sentinel: bool = "REDIS_USE_SENTINEL", "false", "Find the Redis master through Redis Sentinel instead of `REDIS_HOST`/`REDIS_PORT`, and follow it after a failover (docs/cluster.md); enables cluster coordination like `REDIS_HOST`.";
        redis_sentinels: Option<String> = "REDIS_SENTINELS", "", "Sentinel addresses, `host:port,host:port` (a missing port means 26379); required with `REDIS_USE_SENTINEL`.";
        redis_sentinel_service_name: Option<String> = "REDIS_SENTINEL_SERVICE_NAME", "", "The master's name the sentinels monitor (`sentinel monitor <name> ...`); required with `REDIS_USE_SENTINEL`.";
        redis_sentinel_username: Option<String> = "REDIS_SENTINEL_USERNAME", "", "User for the sentinels (ACL), if they require one.";
        redis_sentinel_password: Option<String> = "REDIS_SENTINEL_PASSWORD", "", "Password for the sentinels, if they require one (the master uses `REDIS_PASSWORD`).";
        redis_sentinel_socket_timeout: f64 = "REDIS_SENTINEL_SOCKET_TIMEOUT", "0", "Seconds (fractions allowed) to connect to and hear from one sentinel, and to connect to the master it names; 0: 1 second.";
    }
    "Cluster (several nodes; active when `REDIS_HOST` or `REDIS_USE_SENTINEL` is set)" {
        cluster_advertise_url: Option<String> = "CLUSTER_ADVERTISE_URL", "", "Base URL other nodes use to reach this node's HTTP API (e.g. `http://10.0.0.5:5002`); unset: `http://<SERVER_HOST>:<bound port>`, with `0.0.0.0`/`::` replaced by `127.0.0.1`, which only suits nodes on one host. Set it on every node of a multi-host cluster.";
        plugin_placement_replicas: usize = "PLUGIN_PLACEMENT_REPLICAS", "2", "How many live nodes (chosen by rendezvous hashing of the plugin's unique identifier) run each installed plugin; a node not among them forwards the invocation to one of them. 2 keeps a warm spare, so losing a node causes no cold start; 0 means every node serves every plugin locally.";
        cluster_forward_connect_timeout: u64 = "CLUSTER_FORWARD_CONNECT_TIMEOUT", "2", "Seconds to connect to the node an invocation is forwarded to; on failure the node is skipped and the invocation served here.";
        cluster_forward_idle_timeout: u64 = "CLUSTER_FORWARD_IDLE_TIMEOUT", "300", "Seconds a forwarded invocation may stay silent (no response head, no chunk) before it ends with an error envelope.";
    }
    "Storage" {
        plugin_storage_type: String = "PLUGIN_STORAGE_TYPE", "local", "Where packages, assets and bundles live: `local` (a directory), `aws_s3`, `tencent_cos`, `azure_blob`, `gcs`, `aliyun_oss`, `huawei_obs`, `volcengine_tos` or `baidu_bos`; with a bucket, the local disk is only a cache.";
        plugin_storage_oss_bucket: Option<String> = "PLUGIN_STORAGE_OSS_BUCKET", "", "Bucket of every object storage type except `azure_blob`.";
        plugin_storage_local_root: String = "PLUGIN_STORAGE_LOCAL_ROOT", "storage", "Root directory of local blob storage (relative to the current directory); with object storage it holds the read cache of packages and assets.";
        s3_use_aws_managed_iam: bool = "S3_USE_AWS_MANAGED_IAM", "false", "`aws_s3`: take credentials from the environment (instance or task IAM role) instead of `AWS_ACCESS_KEY`/`AWS_SECRET_KEY`.";
        s3_use_aws: bool = "S3_USE_AWS", "true", "`aws_s3`: talk to AWS; `false` requires `S3_ENDPOINT` (MinIO and other S3-compatible servers).";
        s3_endpoint: Option<String> = "S3_ENDPOINT", "", "`aws_s3`: endpoint URL of an S3-compatible server (`http://` allowed).";
        s3_use_path_style: bool = "S3_USE_PATH_STYLE", "true", "`aws_s3`: path-style addressing (`false` = virtual-hosted, the bucket in the host name).";
        aws_access_key: Option<String> = "AWS_ACCESS_KEY", "", "`aws_s3`: access key id.";
        aws_secret_key: Option<String> = "AWS_SECRET_KEY", "", "`aws_s3`: secret access key.";
        aws_region: Option<String> = "AWS_REGION", "", "`aws_s3`: region (required for AWS; `us-east-1` for a custom endpoint when unset).";
        tencent_cos_secret_key: Option<String> = "TENCENT_COS_SECRET_KEY", "", "`tencent_cos`: secret key.";
        tencent_cos_secret_id: Option<String> = "TENCENT_COS_SECRET_ID", "", "`tencent_cos`: secret id.";
        tencent_cos_region: Option<String> = "TENCENT_COS_REGION", "", "`tencent_cos`: region, e.g. `ap-guangzhou` (endpoint `cos.<region>.myqcloud.com`).";
        tencent_cos_endpoint: Option<String> = "TENCENT_COS_ENDPOINT", "", "`tencent_cos`: endpoint overriding the one derived from the region.";
        azure_blob_storage_container_name: Option<String> = "AZURE_BLOB_STORAGE_CONTAINER_NAME", "", "`azure_blob`: container name.";
        azure_blob_storage_connection_string: Option<String> = "AZURE_BLOB_STORAGE_CONNECTION_STRING", "", "`azure_blob`: connection string (`AccountName`, `AccountKey` or `SharedAccessSignature`, optional `BlobEndpoint`; `UseDevelopmentStorage=true` for Azurite).";
        azure_blob_storage_account_url: Option<String> = "AZURE_BLOB_STORAGE_ACCOUNT_URL", "", "`azure_blob`: account URL (`https://<account>.blob.core.windows.net`) used with managed identity.";
        azure_blob_storage_use_managed_identity: bool = "AZURE_BLOB_STORAGE_USE_MANAGED_IDENTITY", "false", "`azure_blob`: authenticate with the managed identity (instance metadata) instead of a connection string.";
        aliyun_oss_region: Option<String> = "ALIYUN_OSS_REGION", "", "`aliyun_oss`: region (derived from the endpoint when unset).";
        aliyun_oss_endpoint: Option<String> = "ALIYUN_OSS_ENDPOINT", "", "`aliyun_oss`: endpoint, e.g. `https://oss-cn-hangzhou.aliyuncs.com`.";
        aliyun_oss_access_key_id: Option<String> = "ALIYUN_OSS_ACCESS_KEY_ID", "", "`aliyun_oss`: access key id.";
        aliyun_oss_access_key_secret: Option<String> = "ALIYUN_OSS_ACCESS_KEY_SECRET", "", "`aliyun_oss`: access key secret.";
        aliyun_oss_path: Option<String> = "ALIYUN_OSS_PATH", "", "`aliyun_oss`: prefix of every key in the bucket.";
        aliyun_oss_cloudbox_id: Option<String> = "ALIYUN_OSS_CLOUDBOX_ID", "", "`aliyun_oss`: CloudBox id; not supported (start-up fails when set).";
        aliyun_oss_auth_version: String = "ALIYUN_OSS_AUTH_VERSION", "v4", "`aliyun_oss`: accepted for compatibility; requests use OSS's S3-compatible API with SigV4.";
        gcs_credentials: Option<String> = "GCS_CREDENTIALS", "", "`gcs`: base64 of a service account key JSON; unset = application default credentials.";
        storage_emulator_host: Option<String> = "STORAGE_EMULATOR_HOST", "", "`gcs`: `host:port` or URL of a GCS emulator; requests go there without credentials (Google's client libraries, upstream's included, honour the same variable).";
        huawei_obs_access_key: Option<String> = "HUAWEI_OBS_ACCESS_KEY", "", "`huawei_obs`: access key.";
        huawei_obs_secret_key: Option<String> = "HUAWEI_OBS_SECRET_KEY", "", "`huawei_obs`: secret key.";
        huawei_obs_server: Option<String> = "HUAWEI_OBS_SERVER", "", "`huawei_obs`: server, e.g. `https://obs.cn-north-4.myhuaweicloud.com`.";
        huawei_obs_path_style: bool = "HUAWEI_OBS_PATH_STYLE", "false", "`huawei_obs`: path-style addressing.";
        volcengine_tos_endpoint: Option<String> = "VOLCENGINE_TOS_ENDPOINT", "", "`volcengine_tos`: endpoint, e.g. `tos-cn-beijing.volces.com` (requests go to its S3 twin `tos-s3-...`).";
        volcengine_tos_access_key: Option<String> = "VOLCENGINE_TOS_ACCESS_KEY", "", "`volcengine_tos`: access key.";
        volcengine_tos_secret_key: Option<String> = "VOLCENGINE_TOS_SECRET_KEY", "", "`volcengine_tos`: secret key.";
        volcengine_tos_region: Option<String> = "VOLCENGINE_TOS_REGION", "", "`volcengine_tos`: region.";
        baidu_bos_endpoint: Option<String> = "BAIDU_BOS_ENDPOINT", "", "`baidu_bos`: endpoint, e.g. `bj.bcebos.com` (requests go to its S3 twin `s3.bj.bcebos.com`).";
        baidu_bos_access_key: Option<String> = "BAIDU_BOS_ACCESS_KEY", "", "`baidu_bos`: access key.";
        baidu_bos_secret_key: Option<String> = "BAIDU_BOS_SECRET_KEY", "", "`baidu_bos`: secret key.";
        baidu_bos_region: Option<String> = "BAIDU_BOS_REGION", "", "`baidu_bos`: region (endpoint `<region>.bcebos.com` when `BAIDU_BOS_ENDPOINT` is unset).";
        plugin_installed_path: String = "PLUGIN_INSTALLED_PATH", "plugin", "Storage folder of installed packages.";
        plugin_package_cache_path: String = "PLUGIN_PACKAGE_CACHE_PATH", "plugin_packages", "Storage folder of uploaded packages (by unique identifier).";
        plugin_media_cache_path: String = "PLUGIN_MEDIA_CACHE_PATH", "assets", "Storage folder of plugin assets (icons).";
        plugin_media_cache_size: usize = "PLUGIN_MEDIA_CACHE_SIZE", "1024", "Asset cache entries.";
        plugin_asset_cache_size: usize = "PLUGIN_ASSET_CACHE_SIZE", "256", "Package asset cache entries.";
        persistence_storage_path: String = "PERSISTENCE_STORAGE_PATH", "persistence", "Storage folder of plugin key-value data.";
        persistence_storage_max_size: u64 = "PERSISTENCE_STORAGE_MAX_SIZE", "104857600", "Plugin storage quota per tenant and plugin, bytes (a manifest's `storage.size` may lower it).";
    }
    "Local runtime" {
        plugin_working_path: String = "PLUGIN_WORKING_PATH", "cwd", "Root of plugin working directories (extracted packages and their environments), relative to the current directory.";
        python_interpreter_path: Option<String> = "PYTHON_INTERPRETER_PATH", "", "Python >= 3.12 for plugin environments; when unset `python3.13`/`python3.12` on `PATH`, then pyenv's newest 3.12+ (upstream defaults to `/usr/bin/python3`, often too old).";
        uv_path: Option<String> = "UV_PATH", "", "uv binary; when unset found through the interpreter's `uv` module, then on `PATH`, else installed by the daemon into `<PLUGIN_WORKING_PATH>/tools/uv` (pip, from `PIP_MIRROR_URL` when set).";
        uv_cache_dir: Option<String> = "UV_CACHE_DIR", "", "uv's package cache shared by every plugin build; unset means `<PLUGIN_WORKING_PATH>/.uv-cache`.";
        python_env_init_timeout: u64 = "PYTHON_ENV_INIT_TIMEOUT", "120", "Seconds an environment build step may stay silent, and a new plugin may take to send its first heartbeat.";
        plugin_env_build_timeout: u64 = "PLUGIN_ENV_BUILD_TIMEOUT", "600", "Hard limit of one environment build step, seconds (not an upstream variable).";
        plugin_env_build_retries: u32 = "PLUGIN_ENV_BUILD_RETRIES", "1", "Retries of a failed environment build (not an upstream variable).";
        python_compile_all_extra_args: Option<String> = "PYTHON_COMPILE_ALL_EXTRA_ARGS", "", "Accepted for compatibility; `compileall` runs without extra arguments.";
        pip_mirror_auto_detect: bool = "PIP_MIRROR_AUTO_DETECT", "true", "Accepted for compatibility; mirrors are not probed (set `PIP_MIRROR_URL`).";
        pip_mirror_url: Option<String> = "PIP_MIRROR_URL", "", "Package index passed to uv with `-i` (and `requirements.txt` preferred over `pyproject.toml`).";
        pip_mirror_candidates: Option<String> = "PIP_MIRROR_CANDIDATES", "", "Accepted for compatibility; mirrors are not probed.";
        pip_mirror_auto_detect_timeout: u64 = "PIP_MIRROR_AUTO_DETECT_TIMEOUT", "5", "Accepted for compatibility; mirrors are not probed.";
        pip_prefer_binary: bool = "PIP_PREFER_BINARY", "true", "Accepted for compatibility; uv prefers wheels by itself.";
        pip_verbose: bool = "PIP_VERBOSE", "true", "Pass `-v` to uv (its output becomes install progress).";
        pip_extra_args: Option<String> = "PIP_EXTRA_ARGS", "", "Extra uv arguments of the dependency install, split on whitespace.";
        plugin_ignore_uv_lock: bool = "PLUGIN_IGNORE_UV_LOCK", "false", "Do not pass `--frozen` to `uv sync` when the plugin has a `uv.lock`.";
        plugin_local_launching_concurrent: usize = "PLUGIN_LOCAL_LAUNCHING_CONCURRENT", "2", "Plugin environment builds and launches running at the same time (0 = the default).";
        plugin_runtime_buffer_size: usize = "PLUGIN_RUNTIME_BUFFER_SIZE", "1024", "Accepted for compatibility; the line reader grows as needed.";
        plugin_runtime_max_buffer_size: usize = "PLUGIN_RUNTIME_MAX_BUFFER_SIZE", "67108864", "Longest plugin output line (stdio and debug TCP), bytes; a longer line fails only its session. Upstream: 5242880, and a longer line kills the plugin.";
        plugin_stdio_buffer_size: usize = "PLUGIN_STDIO_BUFFER_SIZE", "1024", "Legacy name of `PLUGIN_RUNTIME_BUFFER_SIZE`; accepted for compatibility.";
        plugin_stdio_max_buffer_size: usize = "PLUGIN_STDIO_MAX_BUFFER_SIZE", "5242880", "Legacy name of `PLUGIN_RUNTIME_MAX_BUFFER_SIZE`; wins when set to anything but 5242880.";
        plugin_heartbeat_timeout: u64 = "PLUGIN_HEARTBEAT_TIMEOUT", "120", "A running local plugin silent this long is killed and restarted, seconds (not an upstream variable).";
        plugin_max_restarts: u32 = "PLUGIN_MAX_RESTARTS", "5", "Restarts of a crashing plugin in a row before giving up (not an upstream variable).";
        plugin_restart_backoff_ms: u64 = "PLUGIN_RESTART_BACKOFF_MS", "500", "First restart delay, doubled per restart up to 30 s, milliseconds (not an upstream variable).";
        plugin_idle_timeout: u64 = "PLUGIN_IDLE_TIMEOUT", "1800", "Seconds a local plugin may go without an invocation before it is stopped; the next invocation starts it again (0 = never stop; not an upstream variable).";
        plugin_shared_environments: bool = "PLUGIN_SHARED_ENVIRONMENTS", "true", "Plugins whose dependency set, interpreter and uv are the same share one environment under `<PLUGIN_WORKING_PATH>/.envs`, linked from each plugin's `.venv`; environments no plugin links to are removed on uninstall. `false` builds one environment per plugin (not an upstream variable).";
        plugin_wheels_dir: Option<String> = "PLUGIN_WHEELS_DIR", "", "A directory of wheels every plugin's dependency install may use (`--find-links`), for installs without a package index (not an upstream variable).";
        plugin_install_offline: bool = "PLUGIN_INSTALL_OFFLINE", "false", "Install plugin dependencies without network (uv `--offline`): only wheels shipped in the package, `PLUGIN_WHEELS_DIR` and uv's cache are used, and a missing one fails the install at once, naming it (not an upstream variable).";
        plugin_fork_start: bool = "PLUGIN_FORK_START", "false", "Start local plugins by forking a pre-started Python that already imported the plugin SDK (a fork server per environment: the same interpreter and the same distributions at the same versions) instead of `python -m main`; the forked child applies the plugin's sandbox itself. The first start of an environment is a normal one and starts its fork server; a plugin whose environment differs starts normally (not an upstream variable).";
        plugin_fork_start_zygotes: usize = "PLUGIN_FORK_START_ZYGOTES", "4", "How many fork servers (one per distinct plugin environment) fork-start may keep running, each about 25 MB PSS once plugins share its pages; 0 turns fork-start off (not an upstream variable).";
    }
    "Plugin isolation" {
        plugin_sandbox: SandboxLevel = "PLUGIN_SANDBOX", "best_effort", "Isolation of local plugin processes: `off`, `best_effort` (apply every layer this host offers) or `strict` (refuse to start a plugin when a layer is unavailable); see the README's plugin isolation section (not an upstream variable).";
        plugin_sandbox_uid_base: u32 = "PLUGIN_SANDBOX_UID_BASE", "20000", "First uid (and gid) of plugin processes when the daemon runs as root; a plugin gets `base + (hash of its identifier mod range)`, probing past uids in use (not an upstream variable).";
        plugin_sandbox_uid_range: u32 = "PLUGIN_SANDBOX_UID_RANGE", "40000", "How many uids from `PLUGIN_SANDBOX_UID_BASE` plugins may use; none may belong to a real account (not an upstream variable).";
        plugin_sandbox_max_processes: u64 = "PLUGIN_SANDBOX_MAX_PROCESSES", "512", "Processes and threads one plugin may have (pids cgroup, and `RLIMIT_NPROC` under its own uid) (not an upstream variable).";
        plugin_sandbox_max_open_files: u64 = "PLUGIN_SANDBOX_MAX_OPEN_FILES", "4096", "Open files of one plugin process (`RLIMIT_NOFILE`) (not an upstream variable).";
        plugin_sandbox_read_paths: Option<String> = "PLUGIN_SANDBOX_READ_PATHS", "", "Extra paths (colon-separated) plugins may read besides the system directories, their interpreter, their own directory and `/tmp` (not an upstream variable).";
    }
    "Limits and timeouts" {
        plugin_max_execution_timeout: u64 = "PLUGIN_MAX_EXECUTION_TIMEOUT", "600", "Longest one invocation (a session, its SSE stream, an `/e/` request) may run, seconds; then it ends with `killed by timeout`.";
        plugin_install_timeout: u64 = "PLUGIN_INSTALL_TIMEOUT", "15", "Limit of one plugin install or upgrade, minutes; a task still running past it is marked failed.";
        max_plugin_package_size: u64 = "MAX_PLUGIN_PACKAGE_SIZE", "52428800", "Largest package upload (and uncompressed package), bytes.";
        max_bundle_package_size: u64 = "MAX_BUNDLE_PACKAGE_SIZE", "629145600", "Largest bundle upload, bytes.";
        plugin_model_installations_cache_enabled: bool = "PLUGIN_MODEL_INSTALLATIONS_CACHE_ENABLED", "false", "Cache model provider lists.";
        plugin_model_installations_cache_ttl: u64 = "PLUGIN_MODEL_INSTALLATIONS_CACHE_TTL", "1440", "Model provider list cache lifetime, minutes.";
        lifetime_collection_heartbeat_interval: u64 = "LIFETIME_COLLECTION_HEARTBEAT_INTERVAL", "5", "Node heartbeat interval, seconds.";
        lifetime_collection_gc_interval: u64 = "LIFETIME_COLLECTION_GC_INTERVAL", "60", "Node garbage collection interval, seconds.";
        lifetime_state_gc_interval: u64 = "LIFETIME_STATE_GC_INTERVAL", "300", "State garbage collection interval, seconds.";
        install_task_success_retention: u64 = "INSTALL_TASK_SUCCESS_RETENTION", "120", "How long a fully successful install task stays readable, seconds.";
    }
    "Signatures" {
        force_verifying_signature: bool = "FORCE_VERIFYING_SIGNATURE", "true", "Reject packages without a trusted signature.";
        third_party_signature_verification_enabled: bool = "THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED", "false", "Also trust the keys of `THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS`.";
        third_party_signature_verification_public_keys: Option<String> = "THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS", "", "Comma-separated paths of extra public keys (PEM).";
        enforce_langgenius_plugin_signatures: bool = "ENFORCE_LANGGENIUS_PLUGIN_SIGNATURES", "true", "Reject bundles holding an unsigned package whose author is `langgenius` (single-package uploads are not checked, as upstream).";
    }
    "Remote debugging" {
        plugin_remote_installing_enabled: bool = "PLUGIN_REMOTE_INSTALLING_ENABLED", "true", "Enable remote debugging (`debugging/key` and the debug TCP server).";
        plugin_remote_installing_host: String = "PLUGIN_REMOTE_INSTALLING_HOST", "127.0.0.1", "Debug TCP server address.";
        plugin_remote_installing_port: u16 = "PLUGIN_REMOTE_INSTALLING_PORT", "5003", "Debug TCP server port.";
        plugin_remote_installing_max_conn: usize = "PLUGIN_REMOTE_INSTALLING_MAX_CONN", "256", "Debug connections in total.";
        plugin_remote_installing_max_single_tenant_conn: usize = "PLUGIN_REMOTE_INSTALLING_MAX_SINGLE_TENANT_CONN", "5", "Debug connections per tenant.";
        plugin_remote_install_server_event_loop_nums: usize = "PLUGIN_REMOTE_INSTALL_SERVER_EVENT_LOOP_NUMS", "8", "Accepted for compatibility; unused.";
        debugging_key_ttl: u64 = "DEBUGGING_KEY_TTL", "7200", "Lifetime of a tenant's debugging key, refreshed on every request, seconds.";
        plugin_remote_installing_handshake_timeout: u64 = "PLUGIN_REMOTE_INSTALLING_HANDSHAKE_TIMEOUT", "10", "A debug connection without an accepted handshake key within this time is closed, seconds.";
        plugin_remote_installing_heartbeat_timeout: u64 = "PLUGIN_REMOTE_INSTALLING_HEARTBEAT_TIMEOUT", "60", "A debugging plugin without a heartbeat for this long is disconnected (and its registration must finish within it), seconds.";
    }
    "Serverless" {
        dify_plugin_serverless_connector_url: Option<String> = "DIFY_PLUGIN_SERVERLESS_CONNECTOR_URL", "", "Serverless connector (SRI) base URL; required when `PLATFORM=serverless`.";
        dify_plugin_serverless_connector_api_key: Option<String> = "DIFY_PLUGIN_SERVERLESS_CONNECTOR_API_KEY", "", "Sent verbatim as `Authorization` on every serverless connector call.";
        dify_plugin_serverless_connector_launch_timeout: u64 = "DIFY_PLUGIN_SERVERLESS_CONNECTOR_LAUNCH_TIMEOUT", "240", "Limit of one plugin launch at the serverless connector (upload, build, start), seconds.";
        max_serverless_transaction_timeout: u64 = "MAX_SERVERLESS_TRANSACTION_TIMEOUT", "300", "Longest life of one `/backwards-invocation/transaction` response, seconds (must not be 0).";
        max_serverless_retry_times: u32 = "MAX_SERVERLESS_RETRY_TIMES", "3", "Attempts of a serverless invocation on transport errors and HTTP 502 (backoff 500 ms doubling, at most 30 s).";
        max_serverless_request_bytes: u64 = "MAX_SERVERLESS_REQUEST_BYTES", "5242880", "Largest request body sent to a serverless function, bytes; larger text-embedding requests are split by `texts`, others fail.";
    }
    "Observability" {
        enable_otel: bool = "ENABLE_OTEL", "false", "Export spans over OTLP (HTTP/protobuf): one per HTTP request (method, route, status, tenant, plugin), a child per plugin session and per backwards call, under the caller's `traceparent` trace. Off: no exporter is built.";
        otlp_trace_endpoint: Option<String> = "OTLP_TRACE_ENDPOINT", "", "Full URL spans are posted to; default `OTLP_BASE_ENDPOINT` + `/v1/traces`.";
        otlp_metric_endpoint: Option<String> = "OTLP_METRIC_ENDPOINT", "", "Accepted for compatibility; metrics are not exported over OTLP (see `/metrics`).";
        otlp_base_endpoint: String = "OTLP_BASE_ENDPOINT", "http://localhost:4318", "OTLP/HTTP collector base URL (spans go to `<base>/v1/traces`).";
        otel_api_key: Option<String> = "OTEL_API_KEY", "", "Sent to the collector as `Authorization: Bearer <key>` when set.";
        otel_exporter_otlp_protocol: String = "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "Only `http/protobuf` is implemented (any other value logs a warning and exports over HTTP/protobuf, as upstream does).";
        otel_exporter_type: String = "OTEL_EXPORTER_TYPE", "otlp", "Accepted for compatibility; the exporter is always OTLP.";
        otel_sampling_rate: f64 = "OTEL_SAMPLING_RATE", "1.0", "Ratio of new traces exported (outside 0..1: all); a caller's `traceparent` sampled flag decides for its trace.";
        otel_batch_export_schedule_delay: u64 = "OTEL_BATCH_EXPORT_SCHEDULE_DELAY", "5000", "Spans are sent in batches at least this often, milliseconds.";
        otel_max_queue_size: usize = "OTEL_MAX_QUEUE_SIZE", "2048", "Spans waiting for export at most; more are dropped, so a slow or unreachable collector never holds a request.";
        otel_max_export_batch_size: usize = "OTEL_MAX_EXPORT_BATCH_SIZE", "512", "Spans per export request at most.";
        otel_metric_export_interval: u64 = "OTEL_METRIC_EXPORT_INTERVAL", "60000", "Accepted for compatibility; metrics are not exported over OTLP.";
        otel_batch_export_timeout: u64 = "OTEL_BATCH_EXPORT_TIMEOUT", "10000", "Limit of one export request to the collector, milliseconds.";
        otel_metric_export_timeout: u64 = "OTEL_METRIC_EXPORT_TIMEOUT", "30000", "Accepted for compatibility; metrics are not exported over OTLP.";
        sentry_enabled: bool = "SENTRY_ENABLED", "false", "Accepted for compatibility; Sentry is not implemented.";
        sentry_dsn: Option<String> = "SENTRY_DSN", "", "Sentry DSN.";
        sentry_attach_stacktrace: bool = "SENTRY_ATTACH_STACKTRACE", "false", "Sentry stack traces.";
        sentry_tracing_enabled: bool = "SENTRY_TRACING_ENABLED", "false", "Sentry tracing.";
        sentry_traces_sample_rate: f64 = "SENTRY_TRACES_SAMPLE_RATE", "0", "Sentry trace sample rate.";
        sentry_sample_rate: f64 = "SENTRY_SAMPLE_RATE", "0", "Sentry sample rate.";
        status_page_enabled: bool = "STATUS_PAGE_ENABLED", "true", "Serve the operator's status page at `/status` (and `/status.json`), behind `SERVER_KEY` or `ADMIN_API_KEY` given as `X-Api-Key`, `X-Admin-Api-Key` or `?key=` (not an upstream variable).";
        plugin_log_ring_size: usize = "PLUGIN_LOG_RING_SIZE", "1000", "Lines of stderr, `log` events and process notes kept in memory per plugin, readable through `GET /plugin/{tenant_id}/management/logs` (not an upstream variable).";
    }
    "Testing aids" {
        install_commit_delay_ms: u64 = "DIFY_TEST_INSTALL_COMMIT_DELAY_MS", "0", "Testing aid: pause between preparing a plugin and committing its installation, milliseconds (0 in production).";
        skip_runtime_preparation: bool = "DIFY_TEST_SKIP_RUNTIME_PREPARATION", "false", "Testing aid: install without the runtime's preparation step, so installed plugins are not runnable (never set in production).";
    }
}

/// `.env.example`'s sample `SERVER_KEY` and Dify's default `PLUGIN_DAEMON_KEY`: public, never safe.
pub const WELL_KNOWN_PUBLIC_KEYS: &[&str] = &["lYkiYYT6owG+71oLerGzA7GXCgOT++6ovaezWAjpCjf+Sjc3ZtU+qUEi", "plugin-api-key"];

/// Which SQL engine the daemon stores its state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
    Mysql,
}

/// Where plugins run (`PLATFORM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Local child processes.
    Local,
    /// Functions behind a serverless connector.
    Serverless,
}

impl Platform {
    /// The setting's text: `local` or `serverless`.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Local => "local",
            Platform::Serverless => "serverless",
        }
    }

    /// The platform a setting names; `None` for anything else.
    pub fn parse(text: &str) -> Option<Platform> {
        match text {
            "local" => Some(Platform::Local),
            "serverless" => Some(Platform::Serverless),
            _ => None,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for Settings {
    /// Every setting at its documented default.
    fn default() -> Self {
        Settings::from_lookup_lenient(&|_| None).0
    }
}

impl Settings {
    /// Reads the process environment (after a `.env` file in the current directory, if present).
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Settings::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads every setting through `lookup` (an unset or empty variable takes the default); the first
    /// value that does not parse is the error.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let (settings, invalid) = Settings::from_lookup_lenient(lookup);
        match invalid.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(settings),
        }
    }

    /// Reads settings from a map (tests).
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Settings::from_lookup(&|name| map.get(name).cloned())
    }

    /// The runtime platform; an unknown `PLATFORM` (refused by [`Settings::validate`]) counts as local.
    pub fn platform(&self) -> Platform {
        Platform::parse(&self.platform).unwrap_or(Platform::Local)
    }

    /// The SQL engine: explicit `DB_TYPE`, else SQLite when no `DB_HOST` is set, else PostgreSQL.
    pub fn db_kind(&self) -> Result<DbKind, ConfigError> {
        match self.db_type.as_deref().map(|s| s.to_ascii_lowercase()) {
            None => Ok(if self.db_host.is_some() { DbKind::Postgres } else { DbKind::Sqlite }),
            Some(t) => match t.as_str() {
                "sqlite" => Ok(DbKind::Sqlite),
                "postgresql" | "postgres" | "pgbouncer" => Ok(DbKind::Postgres),
                "mysql" | "oceanbase" | "seekdb" => Ok(DbKind::Mysql),
                _ => Err(ConfigError::Invalid {
                    name: "DB_TYPE",
                    value: t.clone(),
                    reason: "expected sqlite, postgresql, pgbouncer, mysql, oceanbase or seekdb".into(),
                }),
            },
        }
    }

    /// The storage root directory for the `local` blob backend.
    pub fn storage_root(&self) -> PathBuf {
        PathBuf::from(&self.plugin_storage_local_root)
    }

    /// The effective stale-task budget: a task still pending/running after this many seconds from its
    /// creation is failed by the sweeper. It is the real install limit plus a minute of slack.
    pub fn install_budget_secs(&self) -> u64 {
        self.plugin_install_timeout.saturating_mul(60).saturating_add(60)
    }

    /// Paths of extra trusted public keys (only when third-party verification is enabled).
    pub fn third_party_key_paths(&self) -> Vec<PathBuf> {
        if !self.third_party_signature_verification_enabled {
            return Vec::new();
        }
        self.third_party_signature_verification_public_keys
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect()
    }

    /// Whether nodes coordinate through Redis: `REDIS_HOST` is set or `REDIS_USE_SENTINEL` is on.
    pub fn redis_enabled(&self) -> bool {
        self.redis_use_sentinel || self.redis_host.as_deref().is_some_and(|host| !host.trim().is_empty())
    }

    /// The sentinels of `REDIS_SENTINELS` as `(host, port)`, in the given order; a missing port is
    /// 26379. An empty list or an unparsable entry is an error.
    pub fn redis_sentinel_addresses(&self) -> Result<Vec<(String, u16)>, ConfigError> {
        let text = self.redis_sentinels.clone().unwrap_or_default();
        let invalid = |reason: String| ConfigError::Invalid { name: "REDIS_SENTINELS", value: text.clone(), reason };
        let mut addresses = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            let (host, port) = match entry.rsplit_once(':') {
                // `[::1]:26379`, `host:26379`; a bare IPv6 address has more than one colon and no brackets.
                Some((host, port)) if !host.contains(':') || host.starts_with('[') => {
                    let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| invalid(format!("{entry:?}: bad port")))?;
                    (host.trim_start_matches('[').trim_end_matches(']').to_string(), port)
                }
                _ => (entry.trim_start_matches('[').trim_end_matches(']').to_string(), 26379),
            };
            if host.is_empty() {
                return Err(invalid(format!("{entry:?}: no host")));
            }
            addresses.push((host, port));
        }
        if addresses.is_empty() {
            return Err(invalid("expected host:port,host:port".into()));
        }
        Ok(addresses)
    }

    /// How long one exchange with a sentinel (and connecting to the master it names) may take.
    pub fn redis_sentinel_timeout(&self) -> std::time::Duration {
        let seconds = self.redis_sentinel_socket_timeout;
        if seconds.is_finite() && seconds > 0.0 {
            std::time::Duration::from_secs_f64(seconds.min(3600.0))
        } else {
            std::time::Duration::from_secs(1)
        }
    }

    /// Checks cross-setting rules that a single value cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.db_kind()?;
        if Platform::parse(&self.platform).is_none() {
            return Err(ConfigError::Invalid {
                name: "PLATFORM",
                value: self.platform.clone(),
                reason: "expected local or serverless".into(),
            });
        }
        if !matches!(self.db_ssl_mode.as_str(), "disable" | "require") {
            return Err(ConfigError::Invalid {
                name: "DB_SSL_MODE",
                value: self.db_ssl_mode.clone(),
                reason: "expected disable or require".into(),
            });
        }
        if self.admin_api_enabled && self.admin_api_key.as_deref().map_or(0, str::len) < 10 {
            return Err(ConfigError::Invalid {
                name: "ADMIN_API_KEY",
                value: String::new(),
                reason: "must be at least 10 characters when ADMIN_API_ENABLED".into(),
            });
        }
        if self.redis_use_sentinel {
            self.redis_sentinel_addresses()?;
            if self.redis_sentinel_service_name.as_deref().is_none_or(|name| name.trim().is_empty()) {
                return Err(ConfigError::Invalid {
                    name: "REDIS_SENTINEL_SERVICE_NAME",
                    value: String::new(),
                    reason: "required with REDIS_USE_SENTINEL (the name the sentinels monitor)".into(),
                });
            }
        }
        if !self.redis_sentinel_socket_timeout.is_finite() || self.redis_sentinel_socket_timeout < 0.0 {
            return Err(ConfigError::Invalid {
                name: "REDIS_SENTINEL_SOCKET_TIMEOUT",
                value: self.redis_sentinel_socket_timeout.to_string(),
                reason: "expected seconds, 0 or more".into(),
            });
        }
        if !STORAGE_TYPES.contains(&self.plugin_storage_type.trim()) {
            return Err(ConfigError::Invalid {
                name: "PLUGIN_STORAGE_TYPE",
                value: self.plugin_storage_type.clone(),
                reason: format!("expected one of {}", STORAGE_TYPES.join(", ")),
            });
        }
        Ok(())
    }
}

/// Marks the start of the generated settings tables in `README.md`.
pub const README_CONFIG_BEGIN: &str = "<!-- config:begin -->";
/// Marks the end of the generated settings tables in `README.md`.
pub const README_CONFIG_END: &str = "<!-- config:end -->";

/// The whole `docs/configuration.md`: a pointer to the README, where the one table lives.
pub fn configuration_doc() -> String {
    let groups: Vec<&str> = SETTINGS.iter().fold(Vec::new(), |mut groups, s| {
        if groups.last() != Some(&s.group) {
            groups.push(s.group);
        }
        groups
    });
    format!(
        "# Configuration\n\n\
         Every environment variable `dify-plugin-daemon` reads ({} of them: {}) is listed with its default and \
         meaning in the [README's configuration section](../README.md#configuration), together with the settings \
         of `dify-plugin-client`. That table is generated from the one declaration of every setting, the \
         `settings!` table in `crates/daemon/src/config.rs`; `DIFY_REGENERATE_DOCS=1 cargo test -p dify-daemon \
         --lib config` rewrites it and this file, and the same test fails when either is out of date.\n",
        SETTINGS.len(),
        groups.join(", ").to_lowercase(),
    )
}

/// The settings as Markdown: one table per group, in declaration order (the README's generated part).
pub fn settings_markdown_tables() -> String {
    let mut out = String::new();
    let mut current_group = None;
    for s in SETTINGS {
        if current_group != Some(s.group) {
            if current_group.is_some() {
                out.push('\n');
            }
            out.push_str(&format!("**{}**\n\n| Variable | Default | Meaning |\n|---|---|---|\n", s.group));
            current_group = Some(s.group);
        }
        let mut name = format!("`{}`", s.name);
        for fallback in s.fallbacks {
            name.push_str(&format!(" (or `{fallback}`)"));
        }
        let default = if s.default.is_empty() { "(unset)".to_string() } else { format!("`{}`", s.default) };
        out.push_str(&format!("| {} | {} | {} |\n", name, default, s.doc.replace('|', "\\|")));
    }
    out
}

/// `readme` with the text between [`README_CONFIG_BEGIN`] and [`README_CONFIG_END`] replaced by
/// [`settings_markdown_tables`]; `None` when the markers are missing or out of order.
pub fn readme_with_settings_tables(readme: &str) -> Option<String> {
    let begin = readme.find(README_CONFIG_BEGIN)? + README_CONFIG_BEGIN.len();
    let end = begin + readme[begin..].find(README_CONFIG_END)?;
    Some(format!("{}\n{}{}", &readme[..begin], settings_markdown_tables(), &readme[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_settings_parse_and_validate() {
        let settings =
            |pairs: &[(&str, &str)]| Settings::from_map(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap();
        let s = settings(&[
            ("REDIS_USE_SENTINEL", "true"),
            ("REDIS_SENTINELS", " a:26380, [::1]:26381 ,b,,"),
            ("REDIS_SENTINEL_SERVICE_NAME", "mymaster"),
            ("REDIS_SENTINEL_SOCKET_TIMEOUT", "0.25"),
        ]);
        assert!(s.redis_enabled());
        assert_eq!(
            s.redis_sentinel_addresses().unwrap(),
            vec![("a".to_string(), 26380), ("::1".to_string(), 26381), ("b".to_string(), 26379)]
        );
        assert_eq!(s.redis_sentinel_timeout(), std::time::Duration::from_millis(250));
        s.validate().unwrap();
        assert_eq!(settings(&[]).redis_sentinel_timeout(), std::time::Duration::from_secs(1));
        assert!(!settings(&[]).redis_enabled());
        assert!(settings(&[("REDIS_HOST", "r")]).redis_enabled());

        let missing = settings(&[("REDIS_USE_SENTINEL", "true"), ("REDIS_SENTINEL_SERVICE_NAME", "m")]).validate().unwrap_err();
        assert!(missing.to_string().contains("REDIS_SENTINELS"), "{missing}");
        let bad = settings(&[("REDIS_USE_SENTINEL", "true"), ("REDIS_SENTINELS", "a:port"), ("REDIS_SENTINEL_SERVICE_NAME", "m")]);
        assert!(bad.validate().unwrap_err().to_string().contains("\"a:port\": bad port"));
        let nameless = settings(&[("REDIS_USE_SENTINEL", "true"), ("REDIS_SENTINELS", "a:1")]).validate().unwrap_err();
        assert!(nameless.to_string().contains("REDIS_SENTINEL_SERVICE_NAME"), "{nameless}");
        let negative = settings(&[("REDIS_SENTINEL_SOCKET_TIMEOUT", "-1")]).validate().unwrap_err();
        assert!(negative.to_string().contains("REDIS_SENTINEL_SOCKET_TIMEOUT"), "{negative}");
    }

    #[test]
    fn defaults_parse_and_validate() {
        let s = Settings::from_map(&HashMap::new()).unwrap();
        assert_eq!(s.server_port, 5002);
        assert_eq!(s.platform, "local");
        assert!(s.force_verifying_signature);
        assert_eq!(s.db_kind().unwrap(), DbKind::Sqlite);
        assert_eq!(s.plugin_runtime_max_buffer_size, 67_108_864);
        assert_eq!(s.python_interpreter_path, None);
        s.validate().unwrap();
        // Every default of the table parses on its own (the `Default` impl relies on it).
        let (_, invalid) = Settings::from_lookup_lenient(&|_| None);
        assert!(invalid.is_empty(), "{invalid:?}");
    }

    #[test]
    fn db_host_selects_postgres_and_aliases_map() {
        let mut m = HashMap::new();
        m.insert("DB_HOST".to_string(), "db".to_string());
        assert_eq!(Settings::from_map(&m).unwrap().db_kind().unwrap(), DbKind::Postgres);
        m.insert("DB_TYPE".to_string(), "oceanbase".to_string());
        assert_eq!(Settings::from_map(&m).unwrap().db_kind().unwrap(), DbKind::Mysql);
        m.insert("DB_TYPE".to_string(), "oracle".to_string());
        assert!(Settings::from_map(&m).unwrap().db_kind().is_err());
    }

    #[test]
    fn bad_number_is_a_clear_error() {
        let mut m = HashMap::new();
        m.insert("SERVER_PORT".to_string(), "eighty".to_string());
        let err = Settings::from_map(&m).unwrap_err().to_string();
        assert!(err.contains("SERVER_PORT") && err.contains("eighty"), "{err}");
    }

    #[test]
    fn lenient_reading_keeps_the_default_and_reports_the_bad_value() {
        let (s, invalid) = Settings::from_lookup_lenient(&|name| match name {
            "PLUGIN_LOCAL_LAUNCHING_CONCURRENT" => Some("two".into()),
            "PIP_VERBOSE" => Some("maybe".into()),
            "SERVER_PORT" => Some("6000".into()),
            _ => None,
        });
        assert_eq!(s.plugin_local_launching_concurrent, 2);
        assert!(s.pip_verbose);
        assert_eq!(s.server_port, 6000);
        let names: Vec<&str> = invalid.iter().map(|ConfigError::Invalid { name, .. }| *name).collect();
        assert_eq!(names, ["PIP_VERBOSE", "PLUGIN_LOCAL_LAUNCHING_CONCURRENT"]);
    }

    #[test]
    fn fallback_names_apply_only_when_the_main_name_is_unset() {
        let lower_only = Settings::from_lookup(&|name| (name == "https_proxy").then(|| "http://lower".to_string())).unwrap();
        assert_eq!(lower_only.https_proxy.as_deref(), Some("http://lower"));
        let both = Settings::from_lookup(&|name| match name {
            "HTTPS_PROXY" => Some("http://upper".into()),
            "https_proxy" => Some("http://lower".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(both.https_proxy.as_deref(), Some("http://upper"));
    }

    #[test]
    fn every_setting_has_one_name_and_a_doc_line() {
        let mut names: Vec<&str> = SETTINGS.iter().flat_map(|s| std::iter::once(s.name).chain(s.fallbacks.iter().copied())).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a variable name is declared twice");
        for s in SETTINGS {
            assert!(!s.doc.is_empty() && !s.doc.contains('\n'), "{} needs one doc line", s.name);
        }
    }

    /// `DIFY_REGENERATE_DOCS=1 cargo test -p dify-daemon --lib config` rewrites README.md's generated
    /// configuration tables and docs/configuration.md; otherwise a stale file fails this test.
    #[test]
    fn readme_and_docs_match_the_settings_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let readme_path = root.join("README.md");
        let docs_path = root.join("docs/configuration.md");
        let readme = std::fs::read_to_string(&readme_path).expect("read README.md");
        let expected_readme = readme_with_settings_tables(&readme)
            .unwrap_or_else(|| panic!("README.md needs the markers {README_CONFIG_BEGIN} and {README_CONFIG_END}"));
        let expected_docs = configuration_doc();
        if std::env::var_os("DIFY_REGENERATE_DOCS").is_some() {
            if expected_readme != readme {
                std::fs::write(&readme_path, &expected_readme).expect("write README.md");
            }
            std::fs::write(&docs_path, &expected_docs).expect("write docs/configuration.md");
            return;
        }
        let hint = "run `DIFY_REGENERATE_DOCS=1 cargo test -p dify-daemon --lib config` to regenerate it";
        if let Some((line, (found, wanted))) =
            readme.lines().zip(expected_readme.lines()).enumerate().find(|(_, (found, wanted))| found != wanted)
        {
            panic!("README.md line {} differs from the settings table ({hint}):\n  found:  {found}\n  wanted: {wanted}", line + 1);
        }
        assert_eq!(readme.lines().count(), expected_readme.lines().count(), "README.md's configuration tables are stale ({hint})");
        let docs = std::fs::read_to_string(&docs_path).unwrap_or_default();
        assert!(docs == expected_docs, "docs/configuration.md is stale ({hint})");
        for s in SETTINGS {
            assert!(readme.contains(&format!("| `{}`", s.name)), "README.md misses {}", s.name);
        }
    }
}
