//! One launch on the hub: the user (temporary, or the caller's with a named server), a token that
//! opens only that server, the spawn, the hub's progress relayed, and the server's URL.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kiln_builder::{Event, Ready};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::JupyterHub;
use super::client::{Answer, Retry};
use super::names::{launch_name, server_path, spawn_body, user_path};
use crate::config::LaunchServer;
use crate::error::LaunchError;
use crate::store::HubServer;

/// A started server.
pub struct Launched {
    pub url: String,
    pub token: String,
    /// Milliseconds from the spawn request to the hub reporting the server ready.
    pub hub_ms: u64,
}

enum Progress {
    Ready(String),
    Failed(String),
    /// 400 or 404: the server is not starting (yet, or any more).
    NotStarting,
    Ended,
    Unreachable(String),
}

enum ServerState {
    Ready(String),
    Pending,
    Gone(String),
}

impl JupyterHub {
    /// Launch `image` with BinderHub's user options (`fields` holds `repo_url` and `binder_*`).
    /// `user` is the caller's hub user and which of their servers to start (a named server per
    /// launch, or their default server), or `None` for a temporary user.
    pub async fn launch(
        &self,
        image: &str,
        fields: &Ready,
        user: Option<(&str, LaunchServer)>,
        hub_major: Option<u64>,
        events: &mpsc::Sender<Event>,
    ) -> Result<Launched, LaunchError> {
        let server = match user {
            Some((user, which)) => HubServer {
                user: user.to_string(),
                server: match which {
                    LaunchServer::Named => launch_name(&fields.repo_url, 20)?,
                    LaunchServer::Default => String::new(),
                },
                temporary: false,
                failed: false,
                hub: self.store_key.clone(),
            },
            None => HubServer {
                user: launch_name(&fields.repo_url, 32)?,
                server: String::new(),
                temporary: true,
                failed: false,
                hub: self.store_key.clone(),
            },
        };
        let key = (server.user.clone(), server.server.clone());
        self.launching_set().insert(key.clone());
        let result = self.start(&server, image, fields, hub_major, events).await;
        self.launching_set().remove(&key);
        // A refusal before the spawn (the user's default server is busy) leaves nothing to clean.
        if result
            .as_ref()
            .is_err_and(|e| !matches!(e, LaunchError::Quota(_)))
        {
            let failed = HubServer {
                failed: true,
                ..server
            };
            if !self.clean_up(&failed).await
                && let Err(e) = self.store.add_hub_server(&failed).await
            {
                tracing::error!(user = %failed.user, "cannot record a failed launch for the reaper: {e}");
            }
        }
        result
    }

    async fn start(
        &self,
        server: &HubServer,
        image: &str,
        fields: &Ready,
        hub_major: Option<u64>,
        events: &mpsc::Sender<Event>,
    ) -> Result<Launched, LaunchError> {
        let user_path = user_path(&server.user);
        if server.temporary {
            let answer = self
                .client
                .call(Method::POST, &user_path, None, Retry::OnServerErrors)
                .await?;
            // 409: the user exists, which for a fresh random name means an earlier attempt made it.
            if !answer.ok() && answer.status != StatusCode::CONFLICT {
                return Err(self.refusal("create a temporary user", &answer));
            }
        }
        if !server.temporary && server.server.is_empty() {
            // The user's default server is theirs: kiln starts it only when it is not running.
            let answer = self
                .client
                .call(Method::GET, &user_path, None, Retry::OnServerErrors)
                .await?;
            let model = &answer.body["servers"][""];
            if model["ready"] == true || model["pending"].is_string() {
                return Err(LaunchError::Quota(
                    "your default server on the hub is running already; stop it from the hub's home page, then launch again"
                        .into(),
                ));
            }
        }
        self.store.add_hub_server(server).await?;
        let full_name = format!("{}/{}", server.user, server.server);
        let scope = format!("access:servers!server={full_name}");
        let mut request = json!({"scopes": [scope], "note": format!("kiln launch of {image}")});
        if self.token_seconds > 0 {
            request["expires_in"] = json!(self.token_seconds);
        }
        let answer = self
            .client
            .call(
                Method::POST,
                &format!("{user_path}/tokens"),
                Some(&request),
                Retry::OnServerErrors,
            )
            .await?;
        let token = match answer.body["token"].as_str() {
            Some(token) if answer.ok() => token.to_string(),
            _ => return Err(self.refusal("issue a token for the session", &answer)),
        };
        let user_options = json!({
            "image": image,
            "token": token,
            "repo_url": fields.repo_url,
            "binder_ref_url": fields.binder_ref_url,
            "binder_launch_host": fields.binder_launch_host,
            "binder_request": fields.binder_request,
            "binder_persistent_request": fields.binder_persistent_request,
        });
        let body = spawn_body(hub_major, &user_options);
        let path = server_path(&server.user, &server.server);
        let started = Instant::now();
        let deadline = started + self.launch_timeout;
        let _ = events
            .send(Event::launching(
                format!("Asking the hub to start {full_name} from {image}"),
                None,
            ))
            .await;
        let wait = self.wait_ready(&path, &body, deadline, events);
        let url_path = match tokio::time::timeout_at(deadline.into(), wait).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(LaunchError::Hub(format!(
                    "the server did not start within {} s (KILN_LAUNCH_TIMEOUT); the hub stops it",
                    self.launch_timeout.as_secs()
                )));
            }
        };
        let hub_ms = started.elapsed().as_millis() as u64;
        let url = self.public_url.join(&url_path).map_err(|e| {
            LaunchError::Hub(format!(
                "the hub gave a server URL that is not a path ({url_path:?}): {e}"
            ))
        })?;
        let mut url = url.to_string();
        if !url.ends_with('/') {
            url.push('/');
        }
        Ok(Launched { url, token, hub_ms })
    }

    /// Ask the hub to spawn, relay its progress, and return the server's URL path once ready.
    async fn wait_ready(
        &self,
        path: &str,
        body: &Value,
        deadline: Instant,
        events: &mpsc::Sender<Event>,
    ) -> Result<String, LaunchError> {
        // The spawn request returns when the server is ready or after the hub's own short wait;
        // the progress stream, opened meanwhile, tells what happens. It is sent once: a second
        // request would find the server pending.
        let mut spawn = Some({
            let (client, path, body) = (self.client.clone(), path.to_string(), body.clone());
            tokio::spawn(async move {
                client
                    .call(Method::POST, &path, Some(&body), Retry::OnlyUnsent)
                    .await
            })
        });
        let mut spawn_answer: Option<Result<Answer, LaunchError>> = None;
        let mut streamed = false;
        loop {
            if let Some(handle) = spawn.as_mut().filter(|h| h.is_finished()) {
                spawn_answer = Some(
                    handle
                        .await
                        .unwrap_or_else(|e| Err(LaunchError::Hub(e.to_string()))),
                );
                spawn = None;
            }
            if let Some(Ok(answer)) = &spawn_answer
                && !answer.ok()
            {
                // 400 "already running/pending" cannot happen for a fresh name, only for a user's
                // default server: any refusal is final.
                if answer.status == StatusCode::BAD_REQUEST && path.ends_with("/server") {
                    return Err(LaunchError::Quota(format!(
                        "your default server on the hub is running or starting already ({}); stop it from the hub's home page, then launch again",
                        answer.reason()
                    )));
                }
                return Err(self.refusal("start the server", answer));
            }
            match self.follow_progress(path, events).await {
                Progress::Ready(url) => return Ok(url),
                Progress::Failed(message) => {
                    return Err(LaunchError::Hub(format!(
                        "the hub could not start the server: {message}"
                    )));
                }
                Progress::NotStarting if spawn_answer.is_none() && !streamed => {
                    // The spawn request has not reached the hub yet.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Progress::NotStarting | Progress::Ended => {}
                Progress::Unreachable(message) => {
                    tracing::warn!("lost the hub's progress stream: {message}");
                }
            }
            streamed = true;
            // The stream ended without a result: ask the hub where the server is.
            match self.server_state(path).await {
                ServerState::Ready(url) => return Ok(url),
                ServerState::Pending => {
                    if Instant::now() >= deadline {
                        return Err(LaunchError::Hub("the launch timed out".into()));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                ServerState::Gone(reason) => {
                    if spawn_answer.is_none()
                        && let Some(handle) = spawn.take()
                    {
                        spawn_answer = Some(
                            match tokio::time::timeout(Duration::from_secs(5), handle).await {
                                Err(_) => Err(LaunchError::Hub("no answer".into())),
                                Ok(Err(e)) => Err(LaunchError::Hub(e.to_string())),
                                Ok(Ok(answer)) => answer,
                            },
                        );
                    }
                    return Err(match spawn_answer {
                        Some(Ok(answer)) if !answer.ok() => {
                            self.refusal("start the server", &answer)
                        }
                        Some(Err(e)) => LaunchError::Hub(format!(
                            "the hub stopped answering during the launch (it may have restarted): {e}"
                        )),
                        _ => LaunchError::Hub(reason),
                    });
                }
            }
        }
    }

    /// Follow the server's progress stream until it ends.
    async fn follow_progress(&self, path: &str, events: &mpsc::Sender<Event>) -> Progress {
        let response = match self.client.progress(path).await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) if matches!(r.status().as_u16(), 400 | 404) => return Progress::NotStarting,
            Ok(r) => return Progress::Unreachable(format!("HTTP {}", r.status())),
            Err(e) => return Progress::Unreachable(e.to_string()),
        };
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => return Progress::Unreachable(e.to_string()),
            };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            for event in take_events(&mut buffer) {
                let message = event["message"].as_str().unwrap_or_default().to_string();
                if event["failed"] == true {
                    return Progress::Failed(message);
                }
                if event["ready"] == true {
                    let url = event["url"].as_str().unwrap_or_default().to_string();
                    return Progress::Ready(url);
                }
                if !message.is_empty() {
                    let progress = event["progress"].as_u64();
                    let _ = events.send(Event::launching(message, progress)).await;
                }
            }
        }
        Progress::Ended
    }

    /// Where a server is, from the hub's user model.
    async fn server_state(&self, path: &str) -> ServerState {
        // `users/<u>/server[s/<s>]` -> the user path and the server's key in `servers`.
        let user_path: String = path.split('/').take(2).collect::<Vec<_>>().join("/");
        let name = path
            .strip_prefix(&format!("{user_path}/servers/"))
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .to_string()
            })
            .unwrap_or_default();
        match self
            .client
            .call(Method::GET, &user_path, None, Retry::OnServerErrors)
            .await
        {
            Err(e) => ServerState::Gone(e.to_string()),
            Ok(answer) if !answer.ok() => ServerState::Gone(format!(
                "the hub no longer knows the user ({}); did it restart?",
                answer.reason()
            )),
            Ok(answer) => {
                let model = &answer.body["servers"][&name];
                if model["ready"] == true {
                    ServerState::Ready(model["url"].as_str().unwrap_or_default().to_string())
                } else if model["pending"].is_string() {
                    ServerState::Pending
                } else {
                    ServerState::Gone(
                        "the hub stopped the server before it was ready (it may have restarted)"
                            .into(),
                    )
                }
            }
        }
    }
}

/// The complete server-sent events at the start of `buffer` (removed from it), as JSON; frames
/// whose data is not JSON are skipped.
fn take_events(buffer: &mut String) -> Vec<Value> {
    let mut events = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let frame: String = buffer.drain(..end + 2).collect();
        let data: String = frame
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim_start)
            .collect::<Vec<_>>()
            .join("\n");
        if let Ok(event) = serde_json::from_str::<Value>(&data) {
            events.push(event);
        }
    }
    events
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_frames_are_read_whole() {
        let mut buffer = String::from(
            "data: {\"progress\": 10, \"message\": \"a\"}\n\n: keepalive\n\ndata: {\"ready\": tr",
        );
        let events = super::take_events(&mut buffer);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["progress"], 10);
        assert_eq!(buffer, "data: {\"ready\": tr");
        buffer.push_str("ue, \"url\": \"/user/x/\"}\n\n");
        let events = super::take_events(&mut buffer);
        assert_eq!(events[0]["url"], "/user/x/");
        assert!(buffer.is_empty());
    }
}
