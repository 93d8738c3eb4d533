//! Google Cloud Storage through its JSON API (`/storage/v1` and `/upload/storage/v1`), behind the
//! `object_store` crate's [`ObjectStore`] trait so the rest of [`super::object`] treats it like every
//! other bucket.
//!
//! Owns the requests (media uploads, resumable uploads in 256 KiB-aligned chunks for large blobs,
//! downloads, metadata reads, deletes, paginated listings), their bounded retries and the mapping of
//! answers to `object_store` errors. Tokens come from `object_store`'s own GCS credential provider
//! (service account key or application default credentials); with `STORAGE_EMULATOR_HOST` the
//! requests go to that emulator without credentials, as Google's client libraries do. The JSON API
//! is the one Google's client libraries speak, and the one local emulators implement; the
//! `object_store` GCS client speaks the XML API instead.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::gcp::GcpCredentialProvider;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result, UploadPart,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

const STORE: &str = "GCS";
/// Every chunk of a resumable upload but the last must be a multiple of this (the API's rule).
const CHUNK_ALIGN: usize = 256 * 1024;

/// Bounded retries of one request: at most `max_retries` more attempts, backoff doubling from
/// `init` up to `max`, and none started after `timeout` has passed since the first attempt.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub max_retries: usize,
    pub init: Duration,
    pub max: Duration,
    pub timeout: Duration,
}

struct Inner {
    client: reqwest::Client,
    /// `https://storage.googleapis.com` or the emulator's URL, without a trailing slash.
    base: String,
    bucket: String,
    /// `None` = send no `Authorization` (an emulator).
    credentials: Option<GcpCredentialProvider>,
    retry: Retry,
}

/// A GCS bucket spoken to through the JSON API.
#[derive(Clone)]
pub struct GcsJsonStore(Arc<Inner>);

impl fmt::Debug for GcsJsonStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GcsJsonStore({}/{})", self.0.base, self.0.bucket)
    }
}

impl fmt::Display for GcsJsonStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GCS bucket {} at {}", self.0.bucket, self.0.base)
    }
}

fn generic(message: impl Into<String>) -> object_store::Error {
    object_store::Error::Generic { store: STORE, source: message.into().into() }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (object names go into one path
/// segment or query value, `/` included).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether an answer is worth another attempt.
fn transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
}

impl GcsJsonStore {
    pub fn new(base: &str, bucket: &str, credentials: Option<GcpCredentialProvider>, retry: Retry) -> Result<GcsJsonStore> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| generic(format!("cannot build the HTTP client: {e}")))?;
        Ok(GcsJsonStore(Arc::new(Inner {
            client,
            base: base.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            credentials,
            retry,
        })))
    }
}

impl Inner {
    fn object_url(&self, location: &Path) -> String {
        format!("{}/storage/v1/b/{}/o/{}", self.base, encode(&self.bucket), encode(location.as_ref()))
    }

    fn upload_url(&self, location: &Path, upload_type: &str) -> String {
        format!("{}/upload/storage/v1/b/{}/o?uploadType={upload_type}&name={}", self.base, encode(&self.bucket), encode(location.as_ref()))
    }

    async fn authorize(&self, request: RequestBuilder) -> Result<RequestBuilder> {
        match &self.credentials {
            None => Ok(request),
            Some(provider) => {
                let credential = provider.get_credential().await?;
                Ok(if credential.bearer.is_empty() { request } else { request.bearer_auth(&credential.bearer) })
            }
        }
    }

    /// Sends the request `make` builds, retrying connection failures and transient answers within
    /// the bounds of [`Retry`]. Answers that are not transient are returned as they are.
    async fn send(&self, what: &str, make: impl Fn() -> RequestBuilder) -> Result<Response> {
        let started = Instant::now();
        let mut attempt = 0usize;
        loop {
            let request = self.authorize(make()).await?;
            let outcome = request.send().await;
            let retryable = match &outcome {
                Ok(response) => transient(response.status()),
                Err(e) => e.is_connect() || e.is_timeout() || e.is_request(),
            };
            let backoff = self.retry.init.saturating_mul(1u32 << attempt.min(16) as u32).min(self.retry.max);
            if !retryable || attempt >= self.retry.max_retries || started.elapsed() + backoff > self.retry.timeout {
                return match outcome {
                    Ok(response) => Ok(response),
                    Err(e) => Err(generic(format!("{what}: {e} (after {} attempts)", attempt + 1))),
                };
            }
            tracing::debug!(what, attempt, "retrying a GCS request");
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    /// Turns a non-success answer into an error (`NotFound` for 404).
    async fn check(&self, what: &str, location: &Path, response: Response) -> Result<Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = format!("{what} {location}: HTTP {status}: {}", body.chars().take(300).collect::<String>());
        if status == StatusCode::NOT_FOUND {
            return Err(object_store::Error::NotFound { path: location.to_string(), source: message.into() });
        }
        Err(generic(message))
    }

    async fn list_page(&self, prefix: Option<&Path>, delimiter: bool, page: Option<String>) -> Result<Value> {
        let url = format!("{}/storage/v1/b/{}/o", self.base, encode(&self.bucket));
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(prefix) = prefix.filter(|p| !p.as_ref().is_empty()) {
            query.push(("prefix", format!("{}/", prefix.as_ref())));
        }
        if delimiter {
            query.push(("delimiter", "/".into()));
        }
        if let Some(token) = page {
            query.push(("pageToken", token));
        }
        let response = self.send("list", || self.client.get(&url).query(&query)).await?;
        let response = self.check("list", &Path::from(self.bucket.as_str()), response).await?;
        response.json().await.map_err(|e| generic(format!("list: unreadable answer: {e}")))
    }
}

/// An object's metadata from the JSON resource.
fn meta_from_json(value: &Value) -> Result<ObjectMeta> {
    let name = value["name"].as_str().ok_or_else(|| generic("object without a name"))?;
    let size = match &value["size"] {
        Value::String(s) => s.parse().map_err(|_| generic(format!("bad size of {name}")))?,
        other => other.as_u64().unwrap_or(0),
    };
    let last_modified = value["updated"]
        .as_str()
        .or(value["timeCreated"].as_str())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(chrono::Utc::now);
    Ok(ObjectMeta {
        location: Path::from(name),
        last_modified,
        size,
        e_tag: value["etag"].as_str().map(str::to_string),
        version: value["generation"].as_str().map(str::to_string),
    })
}

fn put_result(value: &Value) -> PutResult {
    PutResult { e_tag: value["etag"].as_str().map(str::to_string), version: value["generation"].as_str().map(str::to_string) }
}

#[async_trait]
impl ObjectStore for GcsJsonStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        if !matches!(opts.mode, PutMode::Overwrite) {
            return Err(object_store::Error::NotImplemented);
        }
        let inner = &self.0;
        let url = inner.upload_url(location, "media");
        let body: Bytes = payload.into();
        let response = inner
            .send("upload", || inner.client.post(&url).header("Content-Type", "application/octet-stream").body(body.clone()))
            .await?;
        let response = inner.check("upload", location, response).await?;
        let value: Value = response.json().await.unwrap_or(Value::Null);
        Ok(put_result(&value))
    }

    async fn put_multipart_opts(&self, location: &Path, _opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        let inner = &self.0;
        let url = inner.upload_url(location, "resumable");
        let response = inner
            .send("start upload", || inner.client.post(&url).header("Content-Type", "application/json").body("{}"))
            .await?;
        let response = inner.check("start upload", location, response).await?;
        let session = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| generic(format!("start upload {location}: no session URL in the answer")))?
            .to_string();
        let done: Shared<BoxFuture<'static, Result<(), String>>> = futures::future::ready(Ok(())).boxed().shared();
        Ok(Box::new(Resumable {
            inner: self.0.clone(),
            location: location.clone(),
            session,
            tail: BytesMut::new(),
            sent: 0,
            previous: done,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if options.range.is_some() || options.if_match.is_some() || options.if_none_match.is_some() || options.version.is_some() {
            return Err(object_store::Error::NotImplemented);
        }
        let inner = &self.0;
        let url = inner.object_url(location);
        let response = inner.send("read metadata", || inner.client.get(&url)).await?;
        let response = inner.check("read metadata", location, response).await?;
        let value: Value = response.json().await.map_err(|e| generic(format!("read metadata {location}: {e}")))?;
        let mut meta = meta_from_json(&value)?;
        meta.location = location.clone();
        let range = 0..meta.size;
        if options.head {
            let payload = GetResultPayload::Stream(futures::stream::empty().boxed());
            return Ok(GetResult { payload, meta, range, attributes: Default::default() });
        }
        let response = inner.send("download", || inner.client.get(&url).query(&[("alt", "media")])).await?;
        let response = inner.check("download", location, response).await?;
        let key = location.to_string();
        let stream = response.bytes_stream().map_err(move |e| generic(format!("download {key}: {e}"))).boxed();
        Ok(GetResult { payload: GetResultPayload::Stream(stream), meta, range, attributes: Default::default() })
    }

    async fn delete(&self, location: &Path) -> Result<()> {
        let inner = &self.0;
        let url = inner.object_url(location);
        let response = inner.send("delete", || inner.client.request(Method::DELETE, &url)).await?;
        inner.check("delete", location, response).await?;
        Ok(())
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = self.0.clone();
        let prefix = prefix.cloned();
        // State: None = finished, Some(token) = the next page (Some(None) = the first).
        futures::stream::try_unfold(Some(None::<String>), move |state| {
            let inner = inner.clone();
            let prefix = prefix.clone();
            async move {
                let Some(token) = state else { return Ok::<_, object_store::Error>(None) };
                let page = inner.list_page(prefix.as_ref(), false, token).await?;
                let items = page["items"].as_array().cloned().unwrap_or_default();
                let metas = items.iter().map(meta_from_json).collect::<Result<Vec<_>>>()?;
                let next = page["nextPageToken"].as_str().map(|t| Some(t.to_string()));
                Ok(Some((futures::stream::iter(metas.into_iter().map(Ok)), next)))
            }
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut result = ListResult { common_prefixes: Vec::new(), objects: Vec::new() };
        let mut token = None;
        loop {
            let page = self.0.list_page(prefix, true, token).await?;
            for item in page["items"].as_array().into_iter().flatten() {
                result.objects.push(meta_from_json(item)?);
            }
            for p in page["prefixes"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                result.common_prefixes.push(Path::from(p.trim_end_matches('/')));
            }
            match page["nextPageToken"].as_str() {
                Some(next) => token = Some(next.to_string()),
                None => return Ok(result),
            }
        }
    }

    async fn copy(&self, _from: &Path, _to: &Path) -> Result<()> {
        Err(object_store::Error::NotImplemented)
    }

    async fn copy_if_not_exists(&self, _from: &Path, _to: &Path) -> Result<()> {
        Err(object_store::Error::NotImplemented)
    }
}

/// A resumable upload: parts are sent in order as chunks aligned to [`CHUNK_ALIGN`] (the remainder
/// waits for the next part or the completion, which sends it with the total size). Nothing is
/// visible in the bucket before the completion; an abort cancels the session.
struct Resumable {
    inner: Arc<Inner>,
    location: Path,
    session: String,
    /// Bytes received but not yet sent.
    tail: BytesMut,
    /// Bytes handed to chunk requests so far.
    sent: u64,
    /// The last chunk request; the next one waits for it.
    previous: Shared<BoxFuture<'static, Result<(), String>>>,
}

impl fmt::Debug for Resumable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resumable({})", self.location)
    }
}

impl Resumable {
    /// Sends `chunk` at offset `start`; `total` is set on the last one.
    async fn send_chunk(inner: &Inner, session: &str, chunk: Bytes, start: u64, total: Option<u64>) -> Result<Response, String> {
        let range = match (chunk.is_empty(), total) {
            (true, Some(total)) => format!("bytes */{total}"),
            (false, Some(total)) => format!("bytes {start}-{}/{total}", start + chunk.len() as u64 - 1),
            (_, None) => format!("bytes {start}-{}/*", start + chunk.len() as u64 - 1),
        };
        // A chunk is not retried: after a broken request the server may hold part of it, and the
        // caller aborts the whole upload instead.
        let request = inner.client.put(session).header("Content-Range", range).body(chunk);
        let request = inner.authorize(request).await.map_err(|e| e.to_string())?;
        let response = request.send().await.map_err(|e| format!("upload chunk at {start}: {e}"))?;
        let status = response.status();
        // 308 = chunk stored, more expected; 200/201 = object complete.
        if status.as_u16() == 308 || status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(format!("upload chunk at {start}: HTTP {status}: {}", body.chars().take(300).collect::<String>()))
    }
}

#[async_trait]
impl MultipartUpload for Resumable {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        for part in data.iter() {
            self.tail.extend_from_slice(part);
        }
        let ready = self.tail.len() / CHUNK_ALIGN * CHUNK_ALIGN;
        if ready == 0 {
            return futures::future::ready(Ok(())).boxed();
        }
        let chunk = self.tail.split_to(ready).freeze();
        let start = self.sent;
        self.sent += ready as u64;
        let previous = self.previous.clone();
        let inner = self.inner.clone();
        let session = self.session.clone();
        let this: Shared<BoxFuture<'static, Result<(), String>>> = async move {
            previous.await?;
            Resumable::send_chunk(&inner, &session, chunk, start, None).await.map(|_| ())
        }
        .boxed()
        .shared();
        self.previous = this.clone();
        async move { this.await.map_err(generic) }.boxed()
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.previous.clone().await.map_err(generic)?;
        let chunk = self.tail.split().freeze();
        let start = self.sent;
        let total = start + chunk.len() as u64;
        self.sent = total;
        let response = Resumable::send_chunk(&self.inner, &self.session, chunk, start, Some(total)).await.map_err(generic)?;
        if !response.status().is_success() {
            return Err(generic(format!("complete upload {}: HTTP {}", self.location, response.status())));
        }
        let value: Value = response.json().await.unwrap_or(Value::Null);
        Ok(put_result(&value))
    }

    async fn abort(&mut self) -> Result<()> {
        let inner = &self.inner;
        // Google answers a cancelled session with 499.
        let response = inner.authorize(inner.client.delete(&self.session)).await?.send().await;
        match response {
            Ok(r) if r.status().is_success() || r.status().as_u16() == 499 || r.status() == StatusCode::NOT_FOUND => Ok(()),
            Ok(r) => Err(generic(format!("abort upload {}: HTTP {}", self.location, r.status()))),
            Err(e) => Err(generic(format!("abort upload {}: {e}", self.location))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_as_one_segment() {
        assert_eq!(encode("plugin_packages/a:b@1.0.0"), "plugin_packages%2Fa%3Ab%401.0.0");
        assert_eq!(encode("x y~z"), "x%20y~z");
    }

    #[test]
    fn metadata_from_the_json_resource() {
        let meta = meta_from_json(&serde_json::json!({"name": "a/b", "size": "12", "etag": "e", "generation": "7",
            "updated": "2024-01-02T03:04:05.000Z"}))
        .unwrap();
        assert_eq!((meta.location.as_ref(), meta.size, meta.e_tag.as_deref()), ("a/b", 12, Some("e")));
        assert_eq!(meta.last_modified.to_rfc3339(), "2024-01-02T03:04:05+00:00");
    }
}
