//! Inbound generation trigger: `POST /hooks/generate/{generator}`, signed with the Standard Webhooks scheme
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`)
//! using [`crate::ServerConfig::trigger_secret`].
//!
//! Timestamps more than 5 minutes from the server's clock are refused, and every accepted `webhook-id` is
//! remembered (application record `hooks/trigger/seen/<id>`, so this survives restarts) for that window:
//! a replayed request is refused. `?dry_run=true` answers the plan and unified diffs; otherwise the
//! generator runs and the answer holds its outputs and receipt.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tern_generate::webhooks::{verify, TIMESTAMP_TOLERANCE};
use tern_generate::{Action, Generator, RunOptions};

use crate::{error, Shared};

const SEEN: &str = "hooks/trigger/seen/";

/// Serializes the replay check and the recording of an accepted id.
static REPLAY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// The handler of `POST /hooks/generate/{generator}`.
pub(crate) async fn generate(
    State(state): State<Shared>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = state.config.trigger_secret.clone() else {
        return error(
            StatusCode::FORBIDDEN,
            "the generation trigger is disabled: start the server with a trigger secret",
        );
    };
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (id, ts, sig) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    if id.is_empty() || ts.is_empty() || sig.is_empty() {
        return error(
            StatusCode::UNAUTHORIZED,
            "needs webhook-id, webhook-timestamp and webhook-signature headers (Standard Webhooks)",
        );
    }
    let now = tern_generate::webhooks::unix_now();
    if let Err(e) = verify(&secret, id, ts, sig, &body, now) {
        return error(StatusCode::UNAUTHORIZED, e);
    }
    let Some((_, dir, out)) = state
        .config
        .generators
        .iter()
        .find(|(n, _, _)| *n == name)
        .cloned()
    else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no generator named `{name}` is registered with this server"),
        );
    };
    let dry_run = query.as_deref().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "dry_run" && matches!(v.as_ref(), "true" | "1" | "yes"))
    });
    let store = std::sync::Arc::clone(&state.store);
    let id = id.to_string();
    let result = tokio::task::spawn_blocking(move || -> Result<Response, Response> {
        let internal = |e: &dyn std::fmt::Display| error(StatusCode::INTERNAL_SERVER_ERROR, e);
        // Replay protection: an id seen within the window is refused; older records are pruned.
        let key = format!("{SEEN}{id}");
        // Check-and-record under one lock, so concurrent requests with the same id cannot both pass.
        let replay_guard = REPLAY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if store.app_get(&key).map_err(|e| internal(&e))?.is_some() {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "replayed webhook-id: this request was already accepted",
            ));
        }
        if let Ok(seen) = store.app_scan(SEEN) {
            for (k, v) in seen {
                let at = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                if now.saturating_sub(at) > 2 * TIMESTAMP_TOLERANCE.as_secs() {
                    let _ = store.app_put(&k, None);
                }
            }
        }
        store
            .app_put(&key, Some(now.to_string().as_bytes()))
            .map_err(|e| internal(&e))?;
        drop(replay_guard);
        // A failed run forgets the id: Standard Webhooks senders retry with the same `webhook-id`.
        let failed = |e: &dyn std::fmt::Display| {
            let _ = store.app_put(&key, None);
            internal(e)
        };
        let generator = Generator::new(&store, &dir).map_err(|e| failed(&e))?;
        let options = RunOptions {
            dry_run,
            ..Default::default()
        };
        let report = generator.run(&out, &options).map_err(|e| failed(&e))?;
        let outputs: Vec<serde_json::Value> = report
            .outputs
            .iter()
            .map(|o| {
                let (action, reason) = match &o.action {
                    Action::Created => ("created", None),
                    Action::Updated => ("updated", None),
                    Action::Unchanged => ("unchanged", None),
                    Action::Skipped { reason } => ("skipped", Some(reason.clone())),
                    Action::Conflict { reason } => ("conflict", Some(reason.clone())),
                };
                serde_json::json!({
                    "path": o.path,
                    "template": o.template,
                    "action": action,
                    "reason": reason,
                    "diff": o.diff,
                })
            })
            .collect();
        let receipt = if dry_run {
            serde_json::Value::Null
        } else {
            generator
                .receipt()
                .ok()
                .flatten()
                .and_then(|r| serde_json::to_value(r).ok())
                .unwrap_or(serde_json::Value::Null)
        };
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({
                "generator": report.generator,
                "dry_run": dry_run,
                "summary": report.summary(),
                "outputs": outputs,
                "receipt": receipt,
            }),
        ))
    })
    .await;
    match result {
        Ok(Ok(r)) | Ok(Err(r)) => r,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
