//! Server-sent events with BinderHub's framing: `data: <json>` and a blank line per event, a
//! `:keepalive` comment every 25 s, `Cache-Control: no-cache`.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

/// Stream what arrives on `rx` as server-sent events until the sender is dropped.
pub fn stream(rx: mpsc::Receiver<SseEvent>) -> Response {
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    let mut response = Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(25))
                .text("keepalive"),
        )
        .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    response
}

/// One event as JSON data.
pub fn data(value: &impl serde::Serialize) -> SseEvent {
    SseEvent::default().data(json(value))
}

/// One event as JSON data, with its id (for `Last-Event-ID`). The id comes first, so a reader
/// knows it before the data.
pub fn numbered(id: usize, value: &impl serde::Serialize) -> SseEvent {
    SseEvent::default().id(id.to_string()).data(json(value))
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}
