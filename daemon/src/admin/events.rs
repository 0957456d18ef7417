//! `GET /v1/events`: Server-Sent Events. One `transition` event per local status change
//! (and when a worker enters the view, with `from: null`), one `removed` event per
//! eviction. Each event carries its id; a client reconnecting with `Last-Event-ID` gets
//! what it missed from a bounded buffer, or a `resync` event telling it to re-read
//! `GET /v1/workers`. Comments keep idle connections alive. Streams end at shutdown.
//! At most [`super::held::MAX_EVENT_STREAMS`] are open at once; past it, a 503.

use super::AdminState;
use super::error::Busy;
use crate::events::Event;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Interval of keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn sse(e: &Event) -> SseEvent {
    SseEvent::default()
        .id(e.id.to_string())
        .event(e.kind)
        .data(e.data.to_string())
}

fn resync(reason: &str) -> SseEvent {
    SseEvent::default()
        .event("resync")
        .data(serde_json::json!({"reason": reason}).to_string())
}

/// `GET /v1/events`
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "cluster",
    operation_id = "events",
    summary = "Server-Sent Events of this node's status changes and removals",
    description = "A `text/event-stream` that stays open. Each event has an `id`, an `event` name and JSON `data`: `transition` (schema TransitionEvent: one local status change, or a worker entering the view with `from: null`), `removed` (RemovedEvent: a worker left the view), `resync` (ResyncEvent: events were missed; re-read `GET /v1/workers`). Comments (`:`) every 15 s keep idle connections open. Reconnect with `Last-Event-ID` to get what was missed from a bounded buffer.",
    params(
        ("Last-Event-ID" = Option<u64>, Header, description = "The id of the last event received; events after it are replayed when still buffered, else a `resync` event comes first"),
    ),
    responses(
        (status = 200, description = "The event stream (open until the client goes or the agent stops)",
         content((String = "text/event-stream", example = json!(super::openapi::examples::EVENTS)))),
        (status = 503, description = "`TOO_MANY_EVENT_STREAMS` (128 open; with `Retry-After: 5`)", body = super::error::ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn stream(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Busy> {
    let held = state.held.open_event_stream()?;
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let sub = state.node.events().subscribe(last_seen);
    let mut first: Vec<SseEvent> = Vec::new();
    if sub.resync {
        first.push(resync(
            "the events after Last-Event-ID are no longer buffered; re-read GET /v1/workers",
        ));
    }
    let last_replayed = sub.replay.last().map(|e| e.id);
    first.extend(sub.replay.iter().map(|e| sse(e)));
    let shutdown = state.shutdown.clone();
    let live = stream::unfold(
        (sub.live, shutdown, last_replayed),
        |(mut rx, stop, seen)| async move {
            loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return None,
                    r = rx.recv() => r,
                };
                match next {
                    // Events already sent as replay arrive again on the live channel.
                    Ok(e) if seen.is_some_and(|s| e.id <= s) => continue,
                    Ok(e) => return Some((Ok(sse(&e)), (rx, stop, seen))),
                    Err(RecvError::Lagged(_)) => {
                        return Some((
                            Ok(resync("this client fell behind; re-read GET /v1/workers")),
                            (rx, stop, seen),
                        ));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    // The slot is released when the stream is dropped (client gone, or shutdown).
    let all = stream::iter(first.into_iter().map(Ok))
        .chain(live)
        .map(move |e| {
            let _ = &held;
            e
        });
    Ok(Sse::new(all).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}
