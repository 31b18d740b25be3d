//! The HTTP API (axum). Every endpoint is listed in `openapi.json` beside
//! this file, served at `/api/openapi.json`.
//!
//! Errors are JSON `{"error": "..."}` with a message a person can act on.
//! With `api.token` set, every request but `/health` needs
//! `Authorization: Bearer <token>`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::liverules::{api_rules_dir, LiveRules};
use axum::extract::{DefaultBodyLimit, Path};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::stats::CoreStats;

/// Largest rule file accepted by `PUT /api/rules/{name}`.
pub const RULE_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Most records one page of `/api/alerts` or `/api/quarantine` returns.
pub const PAGE_LIMIT_MAX: usize = 1_000;
const PAGE_LIMIT_DEFAULT: usize = 100;

/// What the API reads.
pub struct ApiState {
    pub token: String,
    pub live: Arc<LiveRules>,
    pub stats: Vec<Arc<CoreStats>>,
    pub data_dir: PathBuf,
    pub alerts_by_rule: Arc<Mutex<BTreeMap<String, u64>>>,
    pub started: std::time::Instant,
    pub outputs: Vec<(String, Arc<crate::outputs::OutputStats>)>,
    pub quarantine: Arc<shardwatch_storage::quarantine::QuarantineWriter>,
    pub schemas: Vec<Arc<crate::schema::SchemaBoard>>,
    /// The syslog UDP port, for the kernel's drop counter.
    pub udp_port: Option<u16>,
    /// Set at shutdown: live streams end so the server can stop.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    pub shards: u32,
    pub recovery: Arc<crate::durable::RecoveryPlan>,
    pub alert_duplicates: Arc<std::sync::atomic::AtomicU64>,
    /// The alert log's health (failing writes, alerts waiting in memory).
    pub alert_log: Arc<crate::output::AlertLogStatus>,
    /// Woken when the alert writer has written new lines.
    pub alerts_written: Arc<tokio::sync::Notify>,
    /// The settings that, with the rules, decide whether payloads are all
    /// decoded (said after each reload).
    pub decoding: crate::liverules::PayloadDecoding,
}

type Shared = Arc<ApiState>;

/// A JSON error response.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError {
        status,
        message: message.into(),
    }
    .into_response()
}

/// An error to answer with: a status and a message a person can act on.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

/// A query string whose bad form is answered with a JSON 400 naming the
/// problem (the one place every list endpoint parses its query).
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(query)| ApiQuery(query))
            .map_err(|err| ApiError {
                status: StatusCode::BAD_REQUEST,
                message: format!("bad query: {err}"),
            })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.message}))).into_response()
    }
}

pub fn router(state: Shared) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/stats", get(stats))
        .route("/api/schemas", get(schemas))
        .route("/api/alerts", get(alerts))
        .route("/api/alerts/stream", get(alert_stream))
        .route("/api/rules", get(rules))
        .route("/api/rules/reload", post(reload_rules))
        .route("/api/rules/{name}", put(put_rule).delete(delete_rule))
        .layer(DefaultBodyLimit::max(RULE_BODY_BYTES_MAX))
        .route("/api/quarantine", get(quarantine))
        .route("/api/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint; see /api/openapi.json",
            )
        })
        .with_state(state)
}

async fn auth(State(state): State<Shared>, request: Request, next: Next) -> Response {
    if state.token.is_empty() {
        return next.run(request).await;
    }
    let expected = format!("Bearer {}", state.token);
    match request.headers().get(header::AUTHORIZATION) {
        Some(value) if value.as_bytes() == expected.as_bytes() => next.run(request).await,
        Some(_) => error(StatusCode::UNAUTHORIZED, "wrong bearer token"),
        None => error(
            StatusCode::UNAUTHORIZED,
            "this API needs `Authorization: Bearer <api.token>`",
        ),
    }
}

/// A core whose heartbeat (see `server::heartbeat`, every 50 ms) is older
/// than this is reported stalled by `/health`.
pub const CORE_STALLED_AFTER_S: f64 = 5.0;

/// The cores whose heartbeat is older than [`CORE_STALLED_AFTER_S`]; a
/// core that has not beaten yet is starting, not stalled.
fn stalled_cores(ages: &[Option<f64>]) -> Vec<usize> {
    ages.iter()
        .enumerate()
        .filter(|(_, age)| age.is_some_and(|a| a > CORE_STALLED_AFTER_S))
        .map(|(core, _)| core)
        .collect()
}

async fn health(State(state): State<Shared>) -> Response {
    let (generation, rules) = state.live.snapshot();
    let now = crate::timefmt::now_ns().max(0) as u64;
    let ages: Vec<Option<f64>> = state.stats.iter().map(|s| s.heartbeat_age_s(now)).collect();
    let stalled = stalled_cores(&ages);
    let journal_failing: Vec<usize> = state
        .stats
        .iter()
        .enumerate()
        .filter(|(_, s)| s.journal_failing.load(std::sync::atomic::Ordering::Relaxed) != 0)
        .map(|(core, _)| core)
        .collect();
    let alert_log_failing = state
        .alert_log
        .failing
        .load(std::sync::atomic::Ordering::Relaxed);
    let healthy = stalled.is_empty() && journal_failing.is_empty() && !alert_log_failing;
    let body = Json(json!({
        "status": if healthy { "ok" } else { "degraded" },
        "uptime_s": state.started.elapsed().as_secs(),
        "cores": state.stats.len(),
        "shards": state.shards,
        "rules": {"generation": generation, "detections": rules.detection_count(), "correlations": rules.correlation_count()},
        "core_heartbeat_age_s": ages,
        "stalled_cores": stalled,
        "journal_failing_cores": journal_failing,
        "alert_log_failing": alert_log_failing,
    }));
    if healthy {
        body.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics(State(state): State<Shared>) -> Response {
    let by_rule: Vec<(String, u64)> = state
        .alerts_by_rule
        .lock()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    let mut body = super::metrics::render(&state.stats, &by_rule);
    super::metrics::render_outputs(&mut body, &state.outputs);
    super::metrics::render_quarantine(&mut body, &state.quarantine);
    super::metrics::render_alert_log(&mut body, &state.alert_log);
    super::metrics::render_state_memory(&mut body, &state.stats);
    super::metrics::render_state_evictions(&mut body, &state.stats);
    super::metrics::render_heartbeats(&mut body, &state.stats);
    super::metrics::render_durability(
        &mut body,
        &state.stats,
        &state.recovery,
        state
            .alert_duplicates
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    if let Some(port) = state.udp_port {
        super::metrics::render_udp_kernel_drops(&mut body, port);
    }
    super::process::render(&mut body, &state.stats);
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn stats(State(state): State<Shared>) -> Json<Value> {
    let (process, cpu) = super::process::stats_json(&state.stats);
    let cores: Vec<_> = state
        .stats
        .iter()
        .zip(cpu)
        .enumerate()
        .map(|(i, (s, cpu_seconds))| {
            let mut report = serde_json::to_value(s.report(i)).unwrap_or(Value::Null);
            if let Some(obj) = report.as_object_mut() {
                // The shard list is for tests at exit; here it is noise.
                obj.remove("shards_seen");
                obj.insert("cpu_seconds".into(), json!(cpu_seconds));
            }
            report
        })
        .collect();
    Json(json!({ "process": process, "cores": cores }))
}

/// Paging shared by the list endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// Only alerts whose rule id or title contains this (case-insensitive).
    rule: Option<String>,
    /// Only alerts with this value in any group field.
    group: Option<String>,
    /// RFC 3339 bounds on `detected_at` (inclusive); compared as text, so
    /// give them in UTC with `Z`, as alerts carry them.
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// The JSON objects of a JSON-lines file. A line that is not one (torn by
/// a crash or a full disk, possibly inside a UTF-8 sequence) is skipped,
/// not a reason to answer nothing.
fn read_jsonl(path: &std::path::Path) -> Result<Vec<Value>, ApiError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes
            .split(|&b| b == b'\n')
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("cannot read {}: {err}", path.display()),
        }),
    }
}

fn page(
    items: Vec<Value>,
    limit: Option<usize>,
    offset: Option<usize>,
) -> Result<Json<Value>, ApiError> {
    let limit = limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    if limit == 0 || limit > PAGE_LIMIT_MAX {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("limit must be between 1 and {PAGE_LIMIT_MAX}"),
        });
    }
    let offset = offset.unwrap_or(0);
    let total = items.len();
    let items: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    let next = (offset + items.len() < total).then_some(offset + items.len());
    Ok(Json(
        json!({"total": total, "offset": offset, "next_offset": next, "items": items}),
    ))
}

async fn alerts(State(state): State<Shared>, ApiQuery(query): ApiQuery<AlertQuery>) -> Response {
    let all = match read_jsonl(&state.data_dir.join("alerts.jsonl")) {
        Ok(all) => all,
        Err(err) => return err.into_response(),
    };
    let rule = query.rule.as_ref().map(|r| r.to_lowercase());
    let matching: Vec<Value> = all
        .into_iter()
        .filter(|a| {
            rule.as_ref().is_none_or(|r| {
                ["id", "title"].iter().any(|k| {
                    a["rule"][k]
                        .as_str()
                        .is_some_and(|v| v.to_lowercase().contains(r.as_str()))
                })
            })
        })
        .filter(|a| {
            query.group.as_ref().is_none_or(|g| {
                a["group"]
                    .as_object()
                    .is_some_and(|m| m.values().any(|v| v.as_str() == Some(g.as_str())))
            })
        })
        .filter(|a| {
            let at = a["detected_at"].as_str().unwrap_or_default();
            query.since.as_deref().is_none_or(|s| at >= s)
                && query.until.as_deref().is_none_or(|u| at <= u)
        })
        .collect();
    match page(matching, query.limit, query.offset) {
        Ok(json) => json.into_response(),
        Err(err) => err.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineQuery {
    reason: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

async fn quarantine(
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<QuarantineQuery>,
) -> Response {
    let mut all = Vec::new();
    for file in [
        shardwatch_storage::quarantine::ROTATED_FILE,
        shardwatch_storage::quarantine::CURRENT_FILE,
    ] {
        match read_jsonl(&state.data_dir.join(file)) {
            Ok(records) => all.extend(records),
            Err(err) => return err.into_response(),
        }
    }
    let matching: Vec<Value> = all
        .into_iter()
        .filter(|r| {
            query
                .reason
                .as_deref()
                .is_none_or(|want| r["reason"].as_str() == Some(want))
        })
        .collect();
    match page(matching, query.limit, query.offset) {
        Ok(json) => json.into_response(),
        Err(err) => err.into_response(),
    }
}

async fn rules(State(state): State<Shared>) -> Json<Value> {
    let (generation, rules) = state.live.snapshot();
    let detections: Vec<Value> = (0..rules.detection_count())
        .map(|i| {
            let m = rules.detection(i);
            json!({"id": m.id, "title": m.title, "level": m.level, "origin": m.origin, "standalone": m.standalone})
        })
        .collect();
    let correlations: Vec<Value> = (0..rules.correlation_count())
        .map(|i| {
            let m = rules.correlation(i);
            json!({"id": m.id, "title": m.title, "level": m.level, "origin": m.origin,
                   "group_by": m.group_by, "timespan_ns": m.timespan_ns})
        })
        .collect();
    Json(json!({"generation": generation, "detections": detections, "correlations": correlations}))
}

/// Compiling is CPU work; it runs off the async runtime's thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("rule compilation task failed: {e}"),
    })
}

/// The reply to a reload asked for by `reason`; a reload that happened
/// is also said on stderr, as the rule watcher's are.
fn reload_response(
    state: &ApiState,
    reason: &str,
    result: Result<crate::liverules::ReloadReport, crate::liverules::ReloadError>,
) -> Response {
    match result {
        Ok(report) => {
            eprintln!("shardwatch: {}", report.describe(reason, state.decoding));
            Json(json!({"reloaded": true, "report": report})).into_response()
        }
        Err(err) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": err.to_string(), "errors": err.errors})),
        )
            .into_response(),
    }
}

async fn reload_rules(State(state): State<Shared>) -> Response {
    let live = state.live.clone();
    match blocking(move || live.reload()).await {
        Ok(result) => reload_response(&state, "API: POST /api/rules/reload", result),
        Err(err) => err.into_response(),
    }
}

fn valid_rule_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `PUT /api/rules/{name}`: validates the YAML body against the running
/// sources, stores it as `<data>/rules.d/{name}.yml` and reloads.
async fn put_rule(State(state): State<Shared>, Path(name): Path<String>, body: String) -> Response {
    if !valid_rule_name(&name) {
        return error(
            StatusCode::BAD_REQUEST,
            "a rule name is 1 to 64 letters, digits, '-' or '_'",
        );
    }
    let path = api_rules_dir(&state.data_dir).join(format!("{name}.yml"));
    let live = state.live.clone();
    let result = blocking(move || -> Result<_, ApiError> {
        let origin = path.display().to_string();
        if let Err(err) = live.validate_with(&origin, &body) {
            return Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: err.errors.join("; "),
            });
        }
        std::fs::write(&path, &body).map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("cannot write {}: {e}", path.display()),
        })?;
        Ok(live.reload())
    })
    .await;
    match result {
        Ok(Ok(reloaded)) => reload_response(&state, &format!("API: PUT rule {name}"), reloaded),
        Ok(Err(err)) | Err(err) => err.into_response(),
    }
}

/// `DELETE /api/rules/{name}`: removes a rule stored through the API and
/// reloads.
async fn delete_rule(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    if !valid_rule_name(&name) {
        return error(StatusCode::BAD_REQUEST, "no such API rule name");
    }
    let path = api_rules_dir(&state.data_dir).join(format!("{name}.yml"));
    if !path.exists() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no rule {name} was stored through the API"),
        );
    }
    let live = state.live.clone();
    let result = blocking(move || -> Result<_, ApiError> {
        std::fs::remove_file(&path).map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("cannot remove {}: {e}", path.display()),
        })?;
        Ok(live.reload())
    })
    .await;
    match result {
        Ok(Ok(reloaded)) => reload_response(&state, &format!("API: DELETE rule {name}"), reloaded),
        Ok(Err(err)) | Err(err) => err.into_response(),
    }
}

async fn openapi() -> Response {
    let mut response = include_str!("openapi.json").into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// How often the live stream looks for new alerts in the log when the
/// alert writer's wake-up ([`ApiState::alerts_written`]) does not come
/// first (it comes on every write; the poll notices the stop flag).
const STREAM_POLL: std::time::Duration = std::time::Duration::from_millis(50);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// `start` replays the whole log first; by default only new alerts.
    from: Option<String>,
}

/// `GET /api/alerts/stream`: server-sent events, one `alert` event per
/// alert line as it reaches the alert log (a keep-alive comment every 15 s).
async fn alert_stream(
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let path = state.data_dir.join("alerts.jsonl");
    let start = match query.from.as_deref() {
        None | Some("now") => std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        Some("start") => 0,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("from={other}: use `start` or `now`"),
            )
        }
    };
    let stop = state.stop.clone();
    let written = state.alerts_written.clone();
    let lines = futures_util::stream::unfold(StreamTail::new(path, start), move |mut tail| {
        let stop = stop.clone();
        let written = written.clone();
        async move {
            loop {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return None;
                }
                if let Some(line) = tail.queue.pop_front() {
                    let event = Event::default().event("alert").data(line);
                    return Some((Ok::<_, std::convert::Infallible>(event), tail));
                }
                // Registered before the read, so a write that lands
                // after it still wakes the wait below; the poll is the
                // fallback (and notices the stop flag).
                let notified = written.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if !tail.read_more().await {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep(STREAM_POLL) => {}
                    }
                }
            }
        }
    });
    Sse::new(lines)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response()
}

/// Most bytes of new alerts the live stream reads on the control thread
/// itself: the lines one wake-up of the alert writer adds, just written and
/// in the page cache. A longer tail (`from=start`, a client that fell
/// behind) is read on tokio's blocking pool, [`STREAM_READ_MAX`] at a time,
/// so a read from the disk never holds the other requests. Reading the
/// usual tail in place spares an `open` and two thread hand-offs per
/// alert (to the pool and back; ~4 µs each on the dev VM, both threads on
/// the helpers' CPU).
const STREAM_INLINE_READ_MAX: u64 = 256 * 1024;
/// Most bytes of the alert log one read of the live stream takes.
const STREAM_READ_MAX: u64 = 4 * 1024 * 1024;

/// Where one live stream is in the alert log: the log, opened once and
/// read by position (it only grows, but for a failed write cut back to
/// its last whole line), and the complete lines read but not yet sent.
struct StreamTail {
    path: PathBuf,
    /// None until the log exists (a node that never wrote an alert).
    file: Option<Arc<std::fs::File>>,
    offset: u64,
    queue: std::collections::VecDeque<String>,
}

impl StreamTail {
    fn new(path: PathBuf, offset: u64) -> Self {
        StreamTail {
            path,
            file: None,
            offset,
            queue: std::collections::VecDeque::new(),
        }
    }

    /// Reads the complete lines written after `offset` into the queue;
    /// false when there were none (a partial line waits for its newline).
    async fn read_more(&mut self) -> bool {
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.path).ok().map(Arc::new);
        }
        let Some(file) = self.file.clone() else {
            return false;
        };
        let Ok(len) = file.metadata().map(|m| m.len()) else {
            return false;
        };
        if len <= self.offset {
            return false;
        }
        let (offset, want) = (self.offset, len - self.offset);
        let fresh = if want <= STREAM_INLINE_READ_MAX {
            read_at(&file, offset, want)
        } else {
            tokio::task::spawn_blocking(move || read_at(&file, offset, want.min(STREAM_READ_MAX)))
                .await
                .ok()
                .flatten()
        };
        let Some(fresh) = fresh else {
            return false;
        };
        let Some(complete) = fresh.iter().rposition(|&b| b == b'\n').map(|i| i + 1) else {
            return false;
        };
        for line in fresh[..complete].split(|&b| b == b'\n') {
            if !line.is_empty() {
                self.queue
                    .push_back(String::from_utf8_lossy(line).into_owned());
            }
        }
        self.offset += complete as u64;
        true
    }
}

/// `len` bytes of `file` from `offset`, or None when they cannot be read
/// (the log cut back meanwhile).
fn read_at(file: &std::fs::File, offset: u64, len: u64) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

/// `GET /api/schemas`: every source's fields, types, versions and type
/// conflicts, merged over the cores: each core copies its registry when
/// asked (within a tick), and the answer waits for those copies up to
/// `SCHEMA_WAIT_MAX` (then it uses the last copies a core made).
async fn schemas(State(state): State<Shared>) -> Json<Value> {
    let tickets: Vec<u64> = state.schemas.iter().map(|board| board.request()).collect();
    let asked = std::time::Instant::now();
    while asked.elapsed() < crate::schema::SCHEMA_WAIT_MAX
        && !(state.schemas.iter().zip(&tickets)).all(|(board, &ticket)| board.answered(ticket))
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let snapshots: Vec<Vec<crate::schema::SourceSchema>> =
        state.schemas.iter().map(|board| board.copy()).collect();
    let merged = crate::schema::merge(&snapshots);
    Json(json!({"sources": merged}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_line_is_skipped_and_the_rest_read() {
        let path = std::env::temp_dir().join(format!("sw-api-jsonl-{}", std::process::id()));
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":2}\n{\"c\":\"\xef\xbf").unwrap();
        let values = read_jsonl(&path).unwrap();
        assert_eq!(values, vec![json!({"a": 1}), json!({"b": 2})]);
        std::fs::remove_file(&path).unwrap();
        assert!(read_jsonl(&path).unwrap().is_empty());
    }

    /// The live stream's reads: nothing before the log exists, a long
    /// tail read on the blocking pool in pieces, a short one in place, a
    /// partial line only once its newline is written.
    #[test]
    fn the_stream_reads_complete_lines_from_where_it_is() {
        use std::io::Write;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let path = std::env::temp_dir().join(format!("sw-api-tail-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut tail = StreamTail::new(path.clone(), 0);
        runtime.block_on(async {
            assert!(!tail.read_more().await, "no log yet");
            let mut log = std::fs::File::create(&path).unwrap();
            assert!(!tail.read_more().await, "an empty log");
            // More than one read's worth: taken in two pieces.
            let line = format!("{{\"n\":\"{}\"}}\n", "x".repeat(1000));
            let lines = (STREAM_READ_MAX as usize / line.len()) + 100;
            for _ in 0..lines {
                log.write_all(line.as_bytes()).unwrap();
            }
            assert!(tail.read_more().await);
            let first = tail.queue.len();
            assert!(first < lines && first > 0, "{first} of {lines}");
            assert!(tail.read_more().await);
            assert_eq!(tail.queue.len(), lines);
            assert!(tail.queue.iter().all(|l| l.len() == line.len() - 1));
            assert!(!tail.read_more().await, "nothing new");
            tail.queue.clear();
            // A partial line waits for its newline.
            log.write_all(b"{\"a\":").unwrap();
            assert!(!tail.read_more().await);
            log.write_all(b"1}\n{\"b\":2}\n").unwrap();
            assert!(tail.read_more().await);
            assert_eq!(
                Vec::from(tail.queue.clone()),
                vec![r#"{"a":1}"#, r#"{"b":2}"#]
            );
            assert_eq!(tail.offset, std::fs::metadata(&path).unwrap().len());
        });
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_core_is_stalled_only_past_the_limit_and_after_its_first_beat() {
        let ages = [
            Some(0.05),
            None,
            Some(CORE_STALLED_AFTER_S),
            Some(CORE_STALLED_AFTER_S + 0.001),
            Some(330.0),
        ];
        assert_eq!(stalled_cores(&ages), vec![3, 4]);
        assert!(stalled_cores(&[Some(0.0), None]).is_empty());
    }
}
