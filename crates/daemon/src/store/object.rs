//! Object storage behind the [`BlobStore`] seam: AWS S3 and S3-compatible services (Tencent COS,
//! Huawei OBS, Volcengine TOS, Baidu BOS, Aliyun OSS), Azure Blob Storage and Google Cloud Storage,
//! all through the `object_store` crate, selected by `PLUGIN_STORAGE_TYPE`.
//!
//! Owns the mapping from the upstream storage variables to a client, the start-up reachability check
//! (a listing of the bucket that fails with a message naming the variables to fix), bounded retries
//! with backoff, multipart uploads of large blobs, and the local read cache of content-addressed keys
//! (packages and assets). The bucket is the source of truth: every write goes to it first, and a node
//! with an empty disk reads everything back from it. Keys are the same relative keys the local
//! backend uses, optionally under a prefix (`ALIYUN_OSS_PATH`).

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart};

use super::blob::{check_key, BlobError, BlobStore, LocalBlobStore};
use crate::config::Settings;

/// Blobs at least this large are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;
/// Size of one part of a multipart upload.
const PART_SIZE: usize = 5 * 1024 * 1024;
/// Longest time one storage request (with its retries) may take before it fails.
const RETRY_TIMEOUT: Duration = Duration::from_secs(20);
/// Retries of one failed storage request.
const MAX_RETRIES: usize = 4;
/// First and longest wait between two attempts (the wait doubles in between).
const INIT_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(3);
/// Limit of the start-up reachability check.
const STARTUP_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the configured object storage cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StorageSetupError {
    #[error("{variable} must be set for PLUGIN_STORAGE_TYPE={kind}")]
    Missing { kind: String, variable: &'static str },
    #[error("invalid {variable} for PLUGIN_STORAGE_TYPE={kind}: {reason}")]
    Invalid { kind: String, variable: &'static str, reason: String },
    #[error("unknown PLUGIN_STORAGE_TYPE {0:?}; expected one of {types}", types = STORAGE_TYPES.join(", "))]
    UnknownType(String),
    #[error(
        "the object storage of PLUGIN_STORAGE_TYPE={kind} is not usable: cannot list bucket {bucket:?} at {endpoint} \
         (check {variables}): {reason}"
    )]
    Unreachable { kind: String, bucket: String, endpoint: String, variables: String, reason: String },
}

pub use crate::config::STORAGE_TYPES;

/// Opens the blob storage the settings select: the local directory, or an object store (checked for
/// reachability) with a local read cache under `PLUGIN_STORAGE_LOCAL_ROOT`.
pub async fn open_blob_store(settings: &Settings) -> Result<Arc<dyn BlobStore>, StorageSetupError> {
    if settings.plugin_storage_type == "local" {
        return Ok(Arc::new(LocalBlobStore::new(settings.storage_root())));
    }
    let remote = ObjectBlobStore::from_settings(settings)?;
    remote.check_reachable(&settings.plugin_package_cache_path).await?;
    let cached_prefixes = [&settings.plugin_package_cache_path, &settings.plugin_media_cache_path]
        .iter()
        .map(|p| format!("{}/", p.trim_matches('/')))
        .collect();
    let cache = LocalBlobStore::new(settings.storage_root().join(".object-cache"));
    Ok(Arc::new(CachedBlobStore { remote, cache, cached_prefixes }))
}

/// Blob storage in a bucket.
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    /// Prepended to every key (`ALIYUN_OSS_PATH`), without slashes at either end; may be empty.
    prefix: String,
    kind: String,
    bucket: String,
    endpoint: String,
    /// The variables a failing start-up check names.
    variables: &'static str,
}

fn required(value: &Option<String>, kind: &str, variable: &'static str) -> Result<String, StorageSetupError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(StorageSetupError::Missing { kind: kind.to_string(), variable }),
    }
}

fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig { init_backoff: INIT_BACKOFF, max_backoff: MAX_BACKOFF, base: 2.0 },
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    }
}

fn client_options(endpoint: &str) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(endpoint.starts_with("http://"))
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(300))
}

/// `host` or `scheme://host` as a URL (HTTPS when no scheme is given).
fn with_scheme(endpoint: &str) -> String {
    let endpoint = endpoint.trim().trim_end_matches('/');
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    }
}

/// `https://host` → `https://<bucket>.host` (virtual-hosted addressing through a custom endpoint).
fn bucket_host(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, host)) if !host.starts_with(&format!("{bucket}.")) => format!("{scheme}://{bucket}.{host}"),
        _ => endpoint.to_string(),
    }
}

/// What an S3-compatible provider needs.
struct S3Options {
    bucket: String,
    region: String,
    endpoint: Option<String>,
    path_style: bool,
    access_key: Option<String>,
    secret_key: Option<String>,
    /// Take credentials from the environment (`AWS_*` variables, web identity, ECS task role,
    /// instance metadata) instead of keys.
    ambient_credentials: bool,
}

impl ObjectBlobStore {
    /// Builds the client `PLUGIN_STORAGE_TYPE` selects from upstream's variables (no network traffic).
    pub fn from_settings(s: &Settings) -> Result<ObjectBlobStore, StorageSetupError> {
        let kind = s.plugin_storage_type.trim().to_string();
        let bucket_var = "PLUGIN_STORAGE_OSS_BUCKET";
        let mut prefix = String::new();
        let (store, bucket, endpoint, variables): (Arc<dyn ObjectStore>, String, String, &'static str) = match kind.as_str() {
            "aws_s3" => {
                let bucket = required(&s.plugin_storage_oss_bucket, &kind, bucket_var)?;
                let custom = s.s3_endpoint.clone().filter(|e| !e.trim().is_empty());
                if !s.s3_use_aws && custom.is_none() {
                    return Err(StorageSetupError::Missing { kind, variable: "S3_ENDPOINT" });
                }
                let region = match s.aws_region.clone().filter(|r| !r.trim().is_empty()) {
                    Some(region) => region,
                    None if custom.is_some() => "us-east-1".to_string(),
                    None => return Err(StorageSetupError::Missing { kind, variable: "AWS_REGION" }),
                };
                let (access_key, secret_key) = if s.s3_use_aws_managed_iam {
                    (None, None)
                } else {
                    (
                        Some(required(&s.aws_access_key, &kind, "AWS_ACCESS_KEY")?),
                        Some(required(&s.aws_secret_key, &kind, "AWS_SECRET_KEY")?),
                    )
                };
                let endpoint = custom.map(|e| with_scheme(&e));
                let opts = S3Options {
                    bucket: bucket.clone(),
                    region,
                    path_style: s.s3_use_path_style,
                    endpoint: endpoint.clone(),
                    access_key,
                    secret_key,
                    ambient_credentials: s.s3_use_aws_managed_iam,
                };
                let shown = endpoint.unwrap_or_else(|| "AWS S3".to_string());
                (s3(&kind, opts)?, bucket, shown, "PLUGIN_STORAGE_OSS_BUCKET, S3_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY, AWS_SECRET_KEY")
            }
            "tencent_cos" => {
                let bucket = required(&s.plugin_storage_oss_bucket, &kind, bucket_var)?;
                let region = required(&s.tencent_cos_region, &kind, "TENCENT_COS_REGION")?;
                let endpoint = match s.tencent_cos_endpoint.clone().filter(|e| !e.trim().is_empty()) {
                    Some(e) => with_scheme(&e),
                    None => format!("https://cos.{region}.myqcloud.com"),
                };
                let opts = S3Options {
                    bucket: bucket.clone(),
                    region,
                    endpoint: Some(endpoint.clone()),
                    path_style: false,
                    access_key: Some(required(&s.tencent_cos_secret_id, &kind, "TENCENT_COS_SECRET_ID")?),
                    secret_key: Some(required(&s.tencent_cos_secret_key, &kind, "TENCENT_COS_SECRET_KEY")?),
                    ambient_credentials: false,
                };
                (
                    s3(&kind, opts)?,
                    bucket,
                    endpoint,
                    "PLUGIN_STORAGE_OSS_BUCKET, TENCENT_COS_REGION, TENCENT_COS_ENDPOINT, TENCENT_COS_SECRET_ID, TENCENT_COS_SECRET_KEY",
                )
            }
            "huawei_obs" => {
                let bucket = required(&s.plugin_storage_oss_bucket, &kind, bucket_var)?;
                let endpoint = with_scheme(&required(&s.huawei_obs_server, &kind, "HUAWEI_OBS_SERVER")?);
                let opts = S3Options {
                    bucket: bucket.clone(),
                    region: region_from_host(&endpoint, "obs.").unwrap_or_else(|| "us-east-1".into()),
                    endpoint: Some(endpoint.clone()),
                    path_style: s.huawei_obs_path_style,
                    access_key: Some(required(&s.huawei_obs_access_key, &kind, "HUAWEI_OBS_ACCESS_KEY")?),
                    secret_key: Some(required(&s.huawei_obs_secret_key, &kind, "HUAWEI_OBS_SECRET_KEY")?),
                    ambient_credentials: false,
                };
                (
                    s3(&kind, opts)?,
                    bucket,
                    endpoint,
                    "PLUGIN_STORAGE_OSS_BUCKET, HUAWEI_OBS_SERVER, HUAWEI_OBS_ACCESS_KEY, HUAWEI_OBS_SECRET_KEY",
                )
            }
            "volcengine_tos" => {
                let bucket = required(&s.plugin_storage_oss_bucket, &kind, bucket_var)?;
                let region = required(&s.volcengine_tos_region, &kind, "VOLCENGINE_TOS_REGION")?;
                let native = with_scheme(&required(&s.volcengine_tos_endpoint, &kind, "VOLCENGINE_TOS_ENDPOINT")?);
                // TOS answers the S3 protocol on `tos-s3-<region>...` beside its native `tos-<region>...`.
                let endpoint = native.replacen("://tos-", "://tos-s3-", 1).replace("tos-s3-s3-", "tos-s3-");
                let opts = S3Options {
                    bucket: bucket.clone(),
                    region,
                    endpoint: Some(endpoint.clone()),
                    path_style: false,
                    access_key: Some(required(&s.volcengine_tos_access_key, &kind, "VOLCENGINE_TOS_ACCESS_KEY")?),
                    secret_key: Some(required(&s.volcengine_tos_secret_key, &kind, "VOLCENGINE_TOS_SECRET_KEY")?),
                    ambient_credentials: false,
                };
                (s3(&kind, opts)?, bucket, endpoint, "PLUGIN_STORAGE_OSS_BUCKET, VOLCENGINE_TOS_ENDPOINT, VOLCENGINE_TOS_REGION, VOLCENGINE_TOS_ACCESS_KEY, VOLCENGINE_TOS_SECRET_KEY")
            }
            "baidu_bos" => {
                let bucket = required(&s.plugin_storage_oss_bucket, &kind, bucket_var)?;
                let region = s.baidu_bos_region.clone().filter(|r| !r.trim().is_empty());
                let endpoint = match (s.baidu_bos_endpoint.clone().filter(|e| !e.trim().is_empty()), &region) {
                    (Some(e), _) => with_scheme(&e),
                    (None, Some(region)) => format!("https://{region}.bcebos.com"),
                    (None, None) => return Err(StorageSetupError::Missing { kind, variable: "BAIDU_BOS_ENDPOINT" }),
                };
                // BOS answers the S3 protocol on `s3.<region>.bcebos.com`.
                let endpoint = if endpoint.contains("://s3.") || !endpoint.ends_with(".bcebos.com") {
                    endpoint
                } else {
                    endpoint.replacen("://", "://s3.", 1)
                };
                let region = region.or_else(|| region_from_host(&endpoint, "s3.")).unwrap_or_else(|| "bj".into());
                let opts = S3Options {
                    bucket: bucket.clone(),
                    region,
                    endpoint: Some(endpoint.clone()),
                    path_style: false,
                    access_key: Some(required(&s.baidu_bos_access_key, &kind, "BAIDU_BOS_ACCESS_KEY")?),
                    secret_key: Some(required(&s.baidu_bos_secret_key, &kind, "BAIDU_BOS_SECRET_KEY")?),
                    ambient_credentials: false,
                };
                (
                    s3(&kind, opts)?,
                    bucket,
                    endpoint,
                    "PLUGIN_STORAGE_OSS_BUCKET, BAIDU_BOS_ENDPOINT, BAIDU_BOS_REGION, BAIDU_BOS_ACCESS_KEY, BAIDU_BOS_SECRET_KEY",
                )
            }
            "aliyun_oss" => {
                let bucket = required(&s.plugin_storage_oss_bucket, &kind, bucket_var)?;
                if s.aliyun_oss_cloudbox_id.as_deref().is_some_and(|c| !c.trim().is_empty()) {
                    return Err(StorageSetupError::Invalid {
                        kind,
                        variable: "ALIYUN_OSS_CLOUDBOX_ID",
                        reason: "CloudBox buckets are not supported".into(),
                    });
                }
                let endpoint = with_scheme(&required(&s.aliyun_oss_endpoint, &kind, "ALIYUN_OSS_ENDPOINT")?);
                let region = s
                    .aliyun_oss_region
                    .clone()
                    .filter(|r| !r.trim().is_empty())
                    .or_else(|| region_from_host(&endpoint, "oss-"))
                    .unwrap_or_else(|| "cn-hangzhou".into());
                let region = region.strip_prefix("oss-").map(str::to_string).unwrap_or(region);
                prefix = s.aliyun_oss_path.clone().unwrap_or_default().trim_matches('/').to_string();
                let opts = S3Options {
                    bucket: bucket.clone(),
                    region,
                    endpoint: Some(endpoint.clone()),
                    path_style: false,
                    access_key: Some(required(&s.aliyun_oss_access_key_id, &kind, "ALIYUN_OSS_ACCESS_KEY_ID")?),
                    secret_key: Some(required(&s.aliyun_oss_access_key_secret, &kind, "ALIYUN_OSS_ACCESS_KEY_SECRET")?),
                    ambient_credentials: false,
                };
                (s3(&kind, opts)?, bucket, endpoint, "PLUGIN_STORAGE_OSS_BUCKET, ALIYUN_OSS_ENDPOINT, ALIYUN_OSS_REGION, ALIYUN_OSS_ACCESS_KEY_ID, ALIYUN_OSS_ACCESS_KEY_SECRET")
            }
            "azure_blob" => {
                let container = required(&s.azure_blob_storage_container_name, &kind, "AZURE_BLOB_STORAGE_CONTAINER_NAME")?;
                let (store, endpoint) = azure(s, &kind, &container)?;
                (
                    store,
                    container,
                    endpoint,
                    "AZURE_BLOB_STORAGE_CONTAINER_NAME, AZURE_BLOB_STORAGE_CONNECTION_STRING, AZURE_BLOB_STORAGE_ACCOUNT_URL",
                )
            }
            "gcs" => {
                let bucket = required(&s.plugin_storage_oss_bucket, &kind, bucket_var)?;
                let (store, endpoint) = gcs(s, &kind, &bucket)?;
                (store, bucket, endpoint, "PLUGIN_STORAGE_OSS_BUCKET, GCS_CREDENTIALS, STORAGE_EMULATOR_HOST")
            }
            _ => return Err(StorageSetupError::UnknownType(kind)),
        };
        Ok(ObjectBlobStore { store, prefix, kind, bucket, endpoint, variables })
    }

    /// Lists the bucket under `probe_prefix` once: a missing bucket, bad credentials or an unreachable
    /// endpoint fail here, before the daemon serves anything.
    pub async fn check_reachable(&self, probe_prefix: &str) -> Result<(), StorageSetupError> {
        let probe = self.object_path(probe_prefix.trim_matches('/'));
        let listing = tokio::time::timeout(STARTUP_CHECK_TIMEOUT, self.store.list_with_delimiter(Some(&probe))).await;
        let reason = match listing {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} s", STARTUP_CHECK_TIMEOUT.as_secs()),
        };
        Err(StorageSetupError::Unreachable {
            kind: self.kind.clone(),
            bucket: self.bucket.clone(),
            endpoint: self.endpoint.clone(),
            variables: self.variables.to_string(),
            reason,
        })
    }

    fn object_path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn checked_path(&self, key: &str) -> Result<ObjectPath, BlobError> {
        check_key(key)?;
        Ok(self.object_path(key))
    }

    /// Uploads `size` bytes from `chunks` in parts of [`PART_SIZE`]; an upload that fails is aborted,
    /// so no partial object becomes visible.
    async fn put_multipart<S>(&self, key: &str, path: &ObjectPath, mut chunks: S) -> Result<(), BlobError>
    where
        S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin + Send,
    {
        let upload = self.store.put_multipart(path).await.map_err(object_err(key))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(BlobError::Io { key: key.to_string(), source: e });
                }
            };
            if let Err(e) = writer.wait_for_capacity(2).await {
                let _ = writer.abort().await;
                return Err(object_err(key)(e));
            }
            writer.put(chunk);
        }
        writer.finish().await.map_err(object_err(key))?;
        Ok(())
    }
}

fn object_err(key: &str) -> impl FnOnce(object_store::Error) -> BlobError + '_ {
    move |source| BlobError::Object { key: key.to_string(), source: Box::new(source) }
}

/// The region in a host such as `obs.cn-north-4.myhuaweicloud.com` (`marker` = `obs.`).
fn region_from_host(endpoint: &str, marker: &str) -> Option<String> {
    let host = endpoint.split_once("://").map_or(endpoint, |(_, h)| h);
    let rest = host.strip_prefix(marker)?;
    rest.split('.').next().filter(|r| !r.is_empty()).map(str::to_string)
}

fn s3(kind: &str, o: S3Options) -> Result<Arc<dyn ObjectStore>, StorageSetupError> {
    use object_store::aws::AmazonS3Builder;
    let base = if o.ambient_credentials { AmazonS3Builder::from_env() } else { AmazonS3Builder::new() };
    let mut builder = base
        .with_bucket_name(&o.bucket)
        .with_region(&o.region)
        .with_retry(retry_config())
        .with_client_options(client_options(o.endpoint.as_deref().unwrap_or("https://")));
    if let Some(endpoint) = &o.endpoint {
        builder = if o.path_style {
            builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false)
        } else {
            builder.with_endpoint(bucket_host(endpoint, &o.bucket)).with_virtual_hosted_style_request(true)
        };
    } else {
        builder = builder.with_virtual_hosted_style_request(!o.path_style);
    }
    if let (Some(access), Some(secret)) = (o.access_key, o.secret_key) {
        builder = builder.with_access_key_id(access).with_secret_access_key(secret);
    }
    builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>).map_err(|e| StorageSetupError::Invalid {
        kind: kind.to_string(),
        variable: "S3 settings",
        reason: e.to_string(),
    })
}

/// The fields of an Azure storage connection string (`Key=Value;...`).
fn connection_string_fields(text: &str) -> std::collections::HashMap<String, String> {
    text.split(';')
        .filter_map(|part| part.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// Azurite's well-known development account.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn azure(s: &Settings, kind: &str, container: &str) -> Result<(Arc<dyn ObjectStore>, String), StorageSetupError> {
    use object_store::azure::MicrosoftAzureBuilder;
    let invalid = |variable: &'static str, reason: String| StorageSetupError::Invalid { kind: kind.to_string(), variable, reason };
    let mut builder = MicrosoftAzureBuilder::new().with_container_name(container).with_retry(retry_config());
    let endpoint;
    if s.azure_blob_storage_use_managed_identity {
        let url = required(&s.azure_blob_storage_account_url, kind, "AZURE_BLOB_STORAGE_ACCOUNT_URL")?;
        let url = with_scheme(&url);
        let account = url
            .split_once("://")
            .and_then(|(_, host)| host.split('.').next())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid("AZURE_BLOB_STORAGE_ACCOUNT_URL", "expected https://<account>.blob...".into()))?;
        // With no key configured the client asks the instance metadata service for a token.
        builder = builder.with_account(account).with_endpoint(url.clone());
        endpoint = url;
    } else {
        let text = required(&s.azure_blob_storage_connection_string, kind, "AZURE_BLOB_STORAGE_CONNECTION_STRING")?;
        let fields = connection_string_fields(&text);
        let development = fields.get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let account = fields.get("accountname").cloned().or_else(|| development.then(|| AZURITE_ACCOUNT.to_string()));
        let account = account.ok_or_else(|| invalid("AZURE_BLOB_STORAGE_CONNECTION_STRING", "no AccountName".into()))?;
        let protocol = fields.get("defaultendpointsprotocol").map_or("https", String::as_str);
        endpoint = match fields.get("blobendpoint") {
            Some(url) => url.trim_end_matches('/').to_string(),
            None if development => format!("http://127.0.0.1:10000/{AZURITE_ACCOUNT}"),
            None => {
                let suffix = fields.get("endpointsuffix").map_or("core.windows.net", String::as_str);
                format!("{protocol}://{account}.blob.{suffix}")
            }
        };
        builder = builder.with_account(&account).with_endpoint(endpoint.clone());
        if let Some(key) = fields.get("accountkey").cloned().or_else(|| development.then(|| AZURITE_KEY.to_string())) {
            builder = builder.with_access_key(key);
        } else if let Some(sas) = fields.get("sharedaccesssignature") {
            let pairs: Vec<(String, String)> = sas
                .trim_start_matches('?')
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), percent_decode(v)))
                .collect();
            builder = builder.with_sas_authorization(pairs);
        } else {
            return Err(invalid("AZURE_BLOB_STORAGE_CONNECTION_STRING", "no AccountKey or SharedAccessSignature".into()));
        }
    }
    builder = builder.with_client_options(client_options(&endpoint));
    let store = builder.build().map_err(|e| invalid("AZURE_BLOB_STORAGE_CONNECTION_STRING", e.to_string()))?;
    Ok((Arc::new(store), endpoint))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Google's production endpoint of the JSON API.
const GCS_ENDPOINT: &str = "https://storage.googleapis.com";

fn gcs(s: &Settings, kind: &str, bucket: &str) -> Result<(Arc<dyn ObjectStore>, String), StorageSetupError> {
    use base64::Engine;
    use object_store::gcp::GoogleCloudStorageBuilder;
    let invalid = |variable: &'static str, reason: String| StorageSetupError::Invalid { kind: kind.into(), variable, reason };
    let retry = super::gcs::Retry { max_retries: MAX_RETRIES, init: INIT_BACKOFF, max: MAX_BACKOFF, timeout: RETRY_TIMEOUT };
    // An emulator (Google's convention: `host:port`, plain HTTP when no scheme is given) takes no
    // credentials.
    if let Some(host) = s.storage_emulator_host.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
        let base = if host.contains("://") { host.trim_end_matches('/').to_string() } else { format!("http://{host}") };
        let store =
            super::gcs::GcsJsonStore::new(&base, bucket, None, retry).map_err(|e| invalid("STORAGE_EMULATOR_HOST", e.to_string()))?;
        return Ok((Arc::new(store), base));
    }
    let mut builder = GoogleCloudStorageBuilder::new().with_bucket_name(bucket).with_retry(retry_config());
    let mut endpoint = GCS_ENDPOINT.to_string();
    // GCS_CREDENTIALS is a base64-encoded service account key (upstream's format); without it the
    // credentials are the environment's application default credentials.
    if let Some(encoded) = s.gcs_credentials.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| invalid("GCS_CREDENTIALS", format!("not base64: {e}")))?;
        let json = String::from_utf8(decoded).map_err(|_| invalid("GCS_CREDENTIALS", "not UTF-8 JSON".into()))?;
        let parsed: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| invalid("GCS_CREDENTIALS", format!("not a service account key: {e}")))?;
        if let Some(base) = parsed.get("gcs_base_url").and_then(|v| v.as_str()) {
            endpoint = base.trim_end_matches('/').to_string();
        }
        builder = builder.with_service_account_key(json);
    }
    // `object_store`'s GCS client provides the tokens (key signing, token refresh, metadata server);
    // the requests themselves go through the JSON API client.
    let credentials = builder.build().map_err(|e| invalid("GCS_CREDENTIALS", e.to_string()))?.credentials().clone();
    let store = super::gcs::GcsJsonStore::new(&endpoint, bucket, Some(credentials), retry)
        .map_err(|e| invalid("GCS_CREDENTIALS", e.to_string()))?;
    Ok((Arc::new(store), endpoint))
}

impl BlobStore for ObjectBlobStore {
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let path = self.checked_path(key)?;
            if bytes.len() >= MULTIPART_THRESHOLD {
                let chunks = futures::stream::iter(bytes.chunks(PART_SIZE).map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c))));
                return self.put_multipart(key, &path, chunks).await;
            }
            let payload = PutPayload::from(Bytes::copy_from_slice(bytes));
            self.store.put(&path, payload).await.map_err(object_err(key))?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, BlobError>> {
        Box::pin(async move {
            let path = self.checked_path(key)?;
            match self.store.get(&path).await {
                Ok(result) => Ok(Some(result.bytes().await.map_err(object_err(key))?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(object_err(key)(e)),
            }
        })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, BlobError>> {
        Box::pin(async move {
            let path = self.checked_path(key)?;
            match self.store.head(&path).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(object_err(key)(e)),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let path = self.checked_path(key)?;
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(object_err(key)(e)),
            }
        })
    }

    fn put_file<'a>(&'a self, key: &'a str, file: &'a FsPath) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let path = self.checked_path(key)?;
            let io = |e| BlobError::Io { key: key.to_string(), source: e };
            let opened = tokio::fs::File::open(file).await.map_err(io)?;
            let size = opened.metadata().await.map_err(io)?.len();
            if size < MULTIPART_THRESHOLD as u64 {
                let bytes = tokio::fs::read(file).await.map_err(io)?;
                self.store.put(&path, PutPayload::from(bytes)).await.map_err(object_err(key))?;
                return Ok(());
            }
            let chunks = tokio_util::io::ReaderStream::with_capacity(opened, PART_SIZE);
            self.put_multipart(key, &path, chunks).await
        })
    }

    fn get_to_file<'a>(&'a self, key: &'a str, file: &'a FsPath) -> BoxFuture<'a, Result<bool, BlobError>> {
        Box::pin(async move {
            let path = self.checked_path(key)?;
            let result = match self.store.get(&path).await {
                Ok(result) => result,
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(object_err(key)(e)),
            };
            let mut stream = result.into_stream();
            // A failure of the bucket while the body streams is reported as a storage error, not as
            // a local I/O error.
            let remote_failure = std::sync::Mutex::new(None);
            let written = super::blob::write_atomically(file, key, |mut out| async {
                use tokio::io::AsyncWriteExt;
                while let Some(chunk) = stream.next().await {
                    let chunk = match chunk {
                        Ok(chunk) => chunk,
                        Err(e) => {
                            let message = e.to_string();
                            *remote_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            return Err(std::io::Error::other(message));
                        }
                    };
                    out.write_all(&chunk).await?;
                }
                Ok(out)
            });
            if let Err(error) = written.await {
                return Err(match remote_failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
                    Some(e) => object_err(key)(e),
                    None => error,
                });
            }
            Ok(true)
        })
    }
}

/// An object store with a local copy of content-addressed keys (packages and assets, whose bytes
/// never change under one key): reads of those keys are served from disk after the first one.
/// Writes and deletes go to the bucket first; the cache is best effort and may be wiped at any time.
pub struct CachedBlobStore {
    remote: ObjectBlobStore,
    cache: LocalBlobStore,
    /// Key prefixes (ending in `/`) whose values are cached.
    cached_prefixes: Vec<String>,
}

impl CachedBlobStore {
    fn cacheable(&self, key: &str) -> bool {
        self.cached_prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }
}

impl BlobStore for CachedBlobStore {
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            self.remote.put(key, bytes).await?;
            if self.cacheable(key) {
                if let Err(error) = self.cache.put(key, bytes).await {
                    tracing::debug!(key, %error, "cannot cache a stored blob locally");
                }
            }
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, BlobError>> {
        Box::pin(async move {
            if !self.cacheable(key) {
                return self.remote.get(key).await;
            }
            if let Ok(Some(bytes)) = self.cache.get(key).await {
                return Ok(Some(bytes));
            }
            // Streamed from the bucket into the cache file, then read once: the value is never
            // held twice.
            let cached = self.cache.path_of(key)?;
            if !self.remote.get_to_file(key, &cached).await? {
                return Ok(None);
            }
            match tokio::fs::read(&cached).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(error) => {
                    tracing::debug!(key, %error, "cannot read a fetched blob back from the cache");
                    self.remote.get(key).await
                }
            }
        })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, BlobError>> {
        self.remote.exists(key)
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            self.remote.delete(key).await?;
            let _ = self.cache.delete(key).await;
            Ok(())
        })
    }

    fn put_file<'a>(&'a self, key: &'a str, file: &'a FsPath) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            self.remote.put_file(key, file).await?;
            if self.cacheable(key) {
                if let Err(error) = self.cache.put_file(key, file).await {
                    tracing::debug!(key, %error, "cannot cache a stored blob locally");
                }
            }
            Ok(())
        })
    }

    fn get_to_file<'a>(&'a self, key: &'a str, file: &'a FsPath) -> BoxFuture<'a, Result<bool, BlobError>> {
        Box::pin(async move {
            if self.cacheable(key) && self.cache.get_to_file(key, file).await.unwrap_or(false) {
                return Ok(true);
            }
            self.remote.get_to_file(key, file).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_map(&map).unwrap()
    }

    fn setup_error(pairs: &[(&str, &str)]) -> String {
        match ObjectBlobStore::from_settings(&settings(pairs)) {
            Ok(_) => panic!("expected a setup error for {pairs:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn missing_variables_are_named() {
        let err = setup_error(&[("PLUGIN_STORAGE_TYPE", "aws_s3")]);
        assert!(err.contains("PLUGIN_STORAGE_OSS_BUCKET"), "{err}");
        let err = setup_error(&[("PLUGIN_STORAGE_TYPE", "aws_s3"), ("PLUGIN_STORAGE_OSS_BUCKET", "b")]);
        assert!(err.contains("AWS_REGION"), "{err}");
        let err = setup_error(&[("PLUGIN_STORAGE_TYPE", "azure_blob")]);
        assert!(err.contains("AZURE_BLOB_STORAGE_CONTAINER_NAME"), "{err}");
        let err = setup_error(&[("PLUGIN_STORAGE_TYPE", "tencent_cos"), ("PLUGIN_STORAGE_OSS_BUCKET", "b")]);
        assert!(err.contains("TENCENT_COS_REGION"), "{err}");
        // With the instance role no keys are needed.
        ObjectBlobStore::from_settings(&settings(&[
            ("PLUGIN_STORAGE_TYPE", "aws_s3"),
            ("PLUGIN_STORAGE_OSS_BUCKET", "b"),
            ("AWS_REGION", "eu-west-1"),
            ("S3_USE_AWS_MANAGED_IAM", "true"),
        ]))
        .unwrap();
        let err = setup_error(&[
            ("PLUGIN_STORAGE_TYPE", "azure_blob"),
            ("AZURE_BLOB_STORAGE_CONTAINER_NAME", "c"),
            ("AZURE_BLOB_STORAGE_USE_MANAGED_IDENTITY", "true"),
        ]);
        assert!(err.contains("AZURE_BLOB_STORAGE_ACCOUNT_URL"), "{err}");
        let err = setup_error(&[("PLUGIN_STORAGE_TYPE", "minio")]);
        assert!(err.contains("unknown PLUGIN_STORAGE_TYPE") && err.contains("aws_s3"), "{err}");
        let err = setup_error(&[("PLUGIN_STORAGE_TYPE", "gcs"), ("PLUGIN_STORAGE_OSS_BUCKET", "b"), ("GCS_CREDENTIALS", "%%")]);
        assert!(err.contains("GCS_CREDENTIALS"), "{err}");
    }

    #[test]
    fn provider_endpoints() {
        assert_eq!(bucket_host("https://cos.ap-guangzhou.myqcloud.com", "b"), "https://b.cos.ap-guangzhou.myqcloud.com");
        assert_eq!(bucket_host("https://b.cos.x.com", "b"), "https://b.cos.x.com");
        assert_eq!(region_from_host("https://obs.cn-north-4.myhuaweicloud.com", "obs.").as_deref(), Some("cn-north-4"));
        assert_eq!(region_from_host("oss-cn-hangzhou.aliyuncs.com", "oss-").as_deref(), Some("cn-hangzhou"));
        let s = ObjectBlobStore::from_settings(&settings(&[
            ("PLUGIN_STORAGE_TYPE", "volcengine_tos"),
            ("PLUGIN_STORAGE_OSS_BUCKET", "b"),
            ("VOLCENGINE_TOS_ENDPOINT", "tos-cn-beijing.volces.com"),
            ("VOLCENGINE_TOS_REGION", "cn-beijing"),
            ("VOLCENGINE_TOS_ACCESS_KEY", "a"),
            ("VOLCENGINE_TOS_SECRET_KEY", "s"),
        ]))
        .unwrap();
        assert_eq!(s.endpoint, "https://tos-s3-cn-beijing.volces.com");
        let s = ObjectBlobStore::from_settings(&settings(&[
            ("PLUGIN_STORAGE_TYPE", "baidu_bos"),
            ("PLUGIN_STORAGE_OSS_BUCKET", "b"),
            ("BAIDU_BOS_ENDPOINT", "bj.bcebos.com"),
            ("BAIDU_BOS_ACCESS_KEY", "a"),
            ("BAIDU_BOS_SECRET_KEY", "s"),
        ]))
        .unwrap();
        assert_eq!(s.endpoint, "https://s3.bj.bcebos.com");
        let s = ObjectBlobStore::from_settings(&settings(&[
            ("PLUGIN_STORAGE_TYPE", "aliyun_oss"),
            ("PLUGIN_STORAGE_OSS_BUCKET", "b"),
            ("ALIYUN_OSS_ENDPOINT", "https://oss-cn-hangzhou.aliyuncs.com"),
            ("ALIYUN_OSS_ACCESS_KEY_ID", "a"),
            ("ALIYUN_OSS_ACCESS_KEY_SECRET", "s"),
            ("ALIYUN_OSS_PATH", "/dify/"),
        ]))
        .unwrap();
        assert_eq!(s.object_path("plugin_packages/x").as_ref(), "dify/plugin_packages/x");
    }

    #[test]
    fn gcs_emulator_host() {
        let s = ObjectBlobStore::from_settings(&settings(&[
            ("PLUGIN_STORAGE_TYPE", "gcs"),
            ("PLUGIN_STORAGE_OSS_BUCKET", "b"),
            ("STORAGE_EMULATOR_HOST", "127.0.0.1:4443"),
        ]))
        .unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:4443");
        let s = ObjectBlobStore::from_settings(&settings(&[
            ("PLUGIN_STORAGE_TYPE", "gcs"),
            ("PLUGIN_STORAGE_OSS_BUCKET", "b"),
            ("STORAGE_EMULATOR_HOST", "https://gcs.internal:8443/"),
        ]))
        .unwrap();
        assert_eq!(s.endpoint, "https://gcs.internal:8443");
        let err = setup_error(&[("PLUGIN_STORAGE_TYPE", "gcs")]);
        assert!(err.contains("PLUGIN_STORAGE_OSS_BUCKET"), "{err}");
    }

    #[test]
    fn azure_connection_strings() {
        let fields = connection_string_fields(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;",
        );
        assert_eq!(fields["accountname"], "devstoreaccount1");
        assert_eq!(fields["blobendpoint"], "http://127.0.0.1:1/devstoreaccount1");
        assert_eq!(percent_decode("a%2Fb%3D"), "a/b=");
    }
}
