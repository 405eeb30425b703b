//! `--metrics ADDR`: the binaries' Prometheus endpoint, with `/healthz` and `/readyz` (README,
//! "Metrics and health"). The library records through the `metrics` facade; this is the exporter
//! the binaries choose: the Prometheus recorder, rendered on each scrape and served with hyper.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use framepipe::consumer::Health;
use framepipe::flow::metrics::{spawn_publisher, Publisher, LAG_PROBE};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// `--metrics ADDR` if given: the started endpoint, or exit status 2 after saying why on stderr
/// (`who`: the binary's name). `consumer` as in [`Endpoint::start`].
pub async fn start_if(
    addr: Option<&str>,
    consumer: bool,
    who: &str,
) -> Result<Option<Endpoint>, std::process::ExitCode> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    match Endpoint::start(addr, consumer).await {
        Ok(endpoint) => Ok(Some(endpoint)),
        Err(e) => {
            eprintln!("{who}: error: {e}");
            Err(std::process::ExitCode::from(2))
        }
    }
}

/// The running endpoint. Dropping it stops the server and the publisher.
pub struct Endpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    health: Arc<OnceLock<Health>>,
    _publisher: Publisher,
    server: JoinHandle<()>,
    upkeep: JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.server.abort();
        self.upkeep.abort();
    }
}

impl Endpoint {
    /// Installs the Prometheus recorder (so call it before building a producer or consumer: their
    /// handles are registered then), starts the level publisher and serves `/metrics`, `/healthz`
    /// and `/readyz` on `addr`. A consumer's `/readyz` says 503 (starting) until
    /// [`Endpoint::set_health`]; a producer's (`consumer: false`) is ready while it runs.
    pub async fn start(addr: &str, consumer: bool) -> Result<Endpoint, String> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("--metrics {addr}: cannot listen: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let handle = PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
        let publisher = spawn_publisher(LAG_PROBE);
        let upkeep_handle = handle.clone();
        let upkeep = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                upkeep_handle.run_upkeep();
            }
        });
        let health = Arc::new(OnceLock::new());
        let server = tokio::spawn(serve(listener, handle, health.clone(), consumer));
        tracing::info!("metrics on http://{addr}/metrics (also /healthz, /readyz)");
        Ok(Endpoint {
            addr,
            health,
            _publisher: publisher,
            server,
            upkeep,
        })
    }

    /// From now on `/readyz` answers from the consumer's readiness.
    pub fn set_health(&self, health: Health) {
        let _ = self.health.set(health);
    }
}

async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    health: Arc<OnceLock<Health>>,
    consumer: bool,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (handle, health) = (handle.clone(), health.clone());
        let service = hyper::service::service_fn(move |req| {
            let answer = route(&req, &handle, health.get(), consumer);
            async move { Ok::<_, Infallible>(answer) }
        });
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}

fn route(
    req: &Request<Incoming>,
    handle: &PrometheusHandle,
    health: Option<&Health>,
    consumer: bool,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", handle.render()),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => readyz(health, consumer),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

/// Ready: 200 and the readiness as JSON; not ready: 503 and the same. A producer has no
/// readiness of its own: ready while it runs.
fn readyz(health: Option<&Health>, consumer: bool) -> Response<Full<Bytes>> {
    let Some(health) = health else {
        return match consumer {
            true => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "starting\n".into(),
            ),
            false => reply(StatusCode::OK, "text/plain", "ready\n".into()),
        };
    };
    let readiness = health.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_string(&readiness).unwrap_or_default() + "\n";
    reply(status, "application/json", body)
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
