//! The HTTP layer of [`PluginDaemonClient`]: builds requests with `X-Api-Key`, decodes the
//! `{code, message, data}` envelope into a typed value or a [`ClientError`], retries idempotent
//! GETs, and turns SSE responses into a stream of typed items.
//!
//! Owns status/envelope/error decoding and retry timing. It must not know routes or payload
//! shapes beyond the envelope; the `installer` and `tools` modules do.

use std::time::Duration;

use dify_protocol::Envelope;
use futures::stream::{BoxStream, StreamExt};
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::sse::SseLineDecoder;

/// A client of one plugin daemon. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct PluginDaemonClient {
    http: reqwest::Client,
    config: ClientConfig,
}

/// A stream of decoded items from an SSE response. It ends after the daemon closes the response
/// or right after the first error item.
pub type ItemStream<T> = BoxStream<'static, Result<T, ClientError>>;

impl PluginDaemonClient {
    /// Builds a client; fails only if the TLS backend cannot be initialised.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|err| ClientError::PluginDaemonInnerError { message: format!("cannot build the HTTP client: {err}") })?;
        Ok(PluginDaemonClient { http, config })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{}", self.config.base_url.trim_end_matches('/'), path.trim_start_matches('/'))
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.http.request(method, url).header("X-Api-Key", &self.config.api_key)
    }

    /// GET with query parameters; retried on connect errors and HTTP 429/503.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ClientError> {
        self.get_with_headers(path, query, HeaderMap::new()).await
    }

    /// [`get`](Self::get) with extra request headers.
    pub(crate) async fn get_with_headers<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        headers: HeaderMap,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let policy = &self.config.retry;
        let mut attempt: u32 = 0;
        loop {
            let sent = self.request(Method::GET, &url).headers(headers.clone()).query(query).send().await;
            let retries_left = attempt < policy.max_retries;
            match sent {
                Err(err) if retries_left && err.is_connect() => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(err) => return Err(transport_error(&url, err)),
                Ok(response)
                    if retries_left && matches!(response.status(), StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) =>
                {
                    let wait = retry_after(response.headers()).unwrap_or_else(|| self.backoff(attempt)).min(policy.max_delay);
                    drop(response);
                    tokio::time::sleep(wait).await;
                }
                Ok(response) => return decode_envelope(response, &url).await,
            }
            attempt += 1;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let policy = &self.config.retry;
        policy.base_delay.saturating_mul(1u32 << attempt.min(16)).min(policy.max_delay)
    }

    /// POST with a JSON body; never retried (it may not be idempotent).
    pub(crate) async fn post_json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
        headers: HeaderMap,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let response = self
            .request(Method::POST, &url)
            .headers(headers)
            .json(body)
            .send()
            .await
            .map_err(|err| transport_error(&url, err))?;
        decode_envelope(response, &url).await
    }

    /// POST without a body.
    pub(crate) async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let response = self.request(Method::POST, &url).send().await.map_err(|err| transport_error(&url, err))?;
        decode_envelope(response, &url).await
    }

    /// POST a multipart form (package uploads).
    pub(crate) async fn post_multipart<T: DeserializeOwned>(&self, path: &str, form: reqwest::multipart::Form) -> Result<T, ClientError> {
        let url = self.url(path);
        let response = self.request(Method::POST, &url).multipart(form).send().await.map_err(|err| transport_error(&url, err))?;
        decode_envelope(response, &url).await
    }

    /// POST a JSON body and read the SSE response incrementally (§3). The returned stream yields
    /// one item per `data:` line as it arrives.
    pub(crate) async fn post_stream<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: &Value,
        headers: HeaderMap,
    ) -> Result<ItemStream<T>, ClientError> {
        let url = self.url(path);
        let response = self
            .request(Method::POST, &url)
            .headers(headers)
            .json(body)
            .send()
            .await
            .map_err(|err| transport_error(&url, err))?;
        Ok(envelope_stream(response, url))
    }
}

/// Dify maps any failure to get an HTTP answer to `PluginDaemonInnerError`.
fn transport_error(url: &str, err: reqwest::Error) -> ClientError {
    let mut message = format!("failed to request plugin daemon at {url}: {err}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    ClientError::PluginDaemonInnerError { message }
}

/// `Retry-After` in delta-seconds (the only form the daemon and common proxies send).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value: &HeaderValue = headers.get(RETRY_AFTER)?;
    let seconds: f64 = value.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// Reads a whole response and decodes its envelope.
async fn decode_envelope<T: DeserializeOwned>(response: Response, url: &str) -> Result<T, ClientError> {
    let status = response.status();
    let body = response.bytes().await.map_err(|err| transport_error(url, err))?;
    decode_envelope_body(status, &body, url)
}

/// Decodes one response body. An error envelope wins over the HTTP status (the 401 of the auth
/// middleware carries a typed error); a non-envelope body falls back to the status.
pub(crate) fn decode_envelope_body<T: DeserializeOwned>(status: StatusCode, body: &[u8], url: &str) -> Result<T, ClientError> {
    let envelope: Envelope<Value> = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(err) => return Err(non_envelope_error(status, body, url, &err.to_string())),
    };
    if envelope.code != 0 {
        return Err(ClientError::from_error_envelope(envelope.code, &envelope.message, url));
    }
    if !status.is_success() {
        return Err(http_status_error(status, body, url));
    }
    match envelope.data {
        None | Some(Value::Null) => {
            Err(ClientError::MalformedResponse { url: url.to_string(), message: "got empty data from plugin daemon".to_string() })
        }
        Some(data) => serde_json::from_value(data)
            .map_err(|err| ClientError::MalformedResponse { url: url.to_string(), message: format!("unexpected response shape: {err}") }),
    }
}

fn non_envelope_error(status: StatusCode, body: &[u8], url: &str, parse_error: &str) -> ClientError {
    if status == StatusCode::NOT_FOUND {
        // The daemon's router answers unknown routes with {"code":"not_found",...}.
        if let Ok(value) = serde_json::from_slice::<Value>(body) {
            if value.get("code").and_then(Value::as_str) == Some("not_found") {
                return ClientError::RouteNotFound { url: url.to_string() };
            }
        }
    }
    if !status.is_success() {
        return http_status_error(status, body, url);
    }
    ClientError::MalformedResponse { url: url.to_string(), message: format!("not a daemon envelope: {parse_error}") }
}

fn http_status_error(status: StatusCode, body: &[u8], url: &str) -> ClientError {
    let mut text = String::from_utf8_lossy(body).into_owned();
    if text.len() > 2048 {
        let mut cut = 2048;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    ClientError::HttpStatus { status: status.as_u16(), url: url.to_string(), body: text }
}

/// Decodes one SSE payload line into an item.
fn decode_stream_line<T: DeserializeOwned>(status: StatusCode, payload: &str, url: &str) -> Result<T, ClientError> {
    let envelope: Envelope<Value> = match serde_json::from_str(payload) {
        Ok(envelope) => envelope,
        Err(err) => return Err(non_envelope_error(status, payload.as_bytes(), url, &err.to_string())),
    };
    if envelope.code != 0 {
        return Err(ClientError::from_error_envelope(envelope.code, &envelope.message, url));
    }
    let data = envelope.data.unwrap_or(Value::Null);
    serde_json::from_value(data)
        .map_err(|err| ClientError::MalformedResponse { url: url.to_string(), message: format!("unexpected stream item: {err}") })
}

struct StreamState {
    status: StatusCode,
    url: String,
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    decoder: SseLineDecoder,
    finished: bool,
}

fn envelope_stream<T: DeserializeOwned + Send + 'static>(response: Response, url: String) -> ItemStream<T> {
    let state = StreamState {
        status: response.status(),
        url,
        body: response.bytes_stream().boxed(),
        decoder: SseLineDecoder::new(),
        finished: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if state.finished {
                return None;
            }
            if let Some(payload) = state.decoder.next_payload() {
                let item = decode_stream_line::<T>(state.status, &payload, &state.url);
                state.finished = item.is_err();
                return Some((item, state));
            }
            match state.body.next().await {
                Some(Ok(chunk)) => {
                    if let Err(err) = state.decoder.push(&chunk) {
                        state.finished = true;
                        let error = ClientError::MalformedResponse { url: state.url.clone(), message: err.to_string() };
                        return Some((Err(error), state));
                    }
                }
                Some(Err(err)) => {
                    state.finished = true;
                    let error = transport_error(&state.url, err);
                    return Some((Err(error), state));
                }
                None => {
                    state.finished = true;
                    if let Some(payload) = state.decoder.finish() {
                        let item = decode_stream_line::<T>(state.status, &payload, &state.url);
                        return Some((item, state));
                    }
                    if !state.status.is_success() {
                        return Some((Err(http_status_error(state.status, b"", &state.url)), state));
                    }
                    return None;
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_delta_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn success_envelope_with_null_data_is_an_error() {
        let result: Result<bool, _> = decode_envelope_body(StatusCode::OK, br#"{"code":0,"message":"success","data":null}"#, "u");
        assert!(matches!(result, Err(ClientError::MalformedResponse { .. })));
    }

    #[test]
    fn unauthorized_status_with_envelope_is_typed() {
        let body = br#"{"code":-401,"message":"{\"message\":\"unauthorized\",\"error_type\":\"PluginDaemonUnauthorizedError\",\"args\":null}","data":null}"#;
        let result: Result<bool, _> = decode_envelope_body(StatusCode::UNAUTHORIZED, body, "u");
        assert!(matches!(result, Err(ClientError::PluginDaemonUnauthorizedError { .. })));
    }

    #[test]
    fn router_not_found_is_route_not_found() {
        let result: Result<bool, _> =
            decode_envelope_body(StatusCode::NOT_FOUND, br#"{"code":"not_found","message":"route not found"}"#, "u");
        assert!(matches!(result, Err(ClientError::RouteNotFound { .. })));
    }

    #[test]
    fn bare_500_is_http_status() {
        let result: Result<bool, _> = decode_envelope_body(StatusCode::INTERNAL_SERVER_ERROR, b"", "u");
        match result {
            Err(ClientError::HttpStatus { status: 500, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
