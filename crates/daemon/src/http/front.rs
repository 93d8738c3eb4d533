//! The service the HTTP server runs: the router, except for invocations (`POST
//! /plugin/{tenant_id}/dispatch/...`), which take a direct path through the very steps the router's
//! layers and extractors take — trace context, accounting and panic recovery, rejection envelopes,
//! the `X-Api-Key` check, the default body limit — composed in one future, without route matching,
//! a boxed future and a state clone per layer, or copies of the path parameters and headers.
//!
//! Owns only that choice. A request the direct path could answer differently in any way goes to the
//! router: a percent-encoded, empty or unknown path part, another method, and every request while
//! spans are exported (the server span names the route the router matched).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Router;
use dify_protocol::access::{find_dispatch_route, DispatchRoute};
use futures::future::{BoxFuture, Either};

use super::{accounted, api_key_refused, envelope_rejection, AppState};

/// The HTTP API as one service: [`super::router`] plus the direct invocation path.
#[derive(Clone)]
pub struct Front {
    inner: Arc<Inner>,
}

struct Inner {
    state: AppState,
    router: Router,
}

impl Front {
    pub fn new(state: AppState) -> Front {
        let router = super::router(state.clone());
        Front { inner: Arc::new(Inner { state, router }) }
    }
}

impl tower::Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<axum::routing::future::RouteFuture<Infallible>, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match direct_dispatch(&request) {
            Some((tenant, route)) if !crate::telemetry::enabled() => {
                let inner = self.inner.clone();
                Either::Right(Box::pin(async move { Ok(serve_dispatch(&inner.state, request, tenant, route).await) }))
            }
            _ => Either::Left(self.inner.router.clone().call(request)),
        }
    }
}

/// The tenant segment's byte range in the path and the route of a request the direct path serves
/// exactly as the router would: `POST /plugin/{tenant_id}/dispatch/{route}` with a known route and
/// no percent-encoding (the router decodes it; these paths never carry any).
fn direct_dispatch(request: &Request) -> Option<(std::ops::Range<usize>, &'static DispatchRoute)> {
    if request.method() != Method::POST {
        return None;
    }
    let path = request.uri().path();
    let rest = path.strip_prefix("/plugin/")?;
    let (tenant, rest) = rest.split_once('/')?;
    let route = rest.strip_prefix("dispatch")?;
    if tenant.is_empty() || tenant.contains('%') || route.contains('%') {
        return None;
    }
    let route = find_dispatch_route(route)?;
    let start = "/plugin/".len();
    Some((start..start + tenant.len(), route))
}

/// The router's layers and the dispatch handler, in the router's order: trace context, accounting
/// and panic recovery, rejection envelopes, the API key, the body (default limit), the handler.
async fn serve_dispatch(state: &AppState, request: Request, tenant: std::ops::Range<usize>, route: &'static DispatchRoute) -> Response {
    super::trace::traced(request, |request| {
        accounted(state, request, |request| async move {
            let response = authorised_dispatch(state, request, tenant, route).await;
            envelope_rejection(response).await
        })
    })
    .await
}

async fn authorised_dispatch(
    state: &AppState,
    request: Request,
    tenant: std::ops::Range<usize>,
    route: &'static DispatchRoute,
) -> Response {
    if let Some(refused) = api_key_refused(state, request.headers()) {
        return refused;
    }
    let (parts, body) = request.into_parts();
    // The same extractor as the router's handler, so the same limit (the default: no layer of the
    // dispatch routes sets one) and the same rejections.
    let body = match Bytes::from_request(Request::new(body), state).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    let tenant_id = &parts.uri.path()[tenant];
    super::dispatch::serve(state, tenant_id, route, &parts.headers, &body).await
}
