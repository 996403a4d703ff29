//! The JupyterHub launcher: kiln asks a hub to start a server with the built image, through the hub's
//! REST API, as BinderHub does, so the hub keeps authentication, quotas, culling and storage.
//!
//! One launch: a temporary user (anonymous launches) or a named server of the caller's hub user, a hub
//! token that opens only that server, then `POST .../servers/<name>` with BinderHub's user options
//! `{image, token, repo_url, binder_*}`, the hub's spawn progress relayed as `launching` events, and the
//! server's URL and token in `ready`. Every server kiln starts is recorded in the state database until
//! the hub no longer has it; then kiln deletes the temporary user (or removes the named server).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::store::{HubServer, Store};

/// Attempts of one hub API call when the hub is unreachable or answers 5xx.
const ATTEMPTS: u32 = 4;

pub struct JupyterHub {
    /// The hub's public address, ending in `/` (the `ready` URL starts with it).
    public_url: url::Url,
    /// The hub's REST API, ending in `/` (such as `http://127.0.0.1:8000/hub/api/`).
    api_url: String,
    token: String,
    client: reqwest::Client,
    launch_timeout: Duration,
    token_seconds: u64,
    /// First delay between attempts; it doubles each time.
    retry_delay: Duration,
    store: Arc<Store>,
    /// Servers being launched: the reaper leaves them alone.
    launching: Mutex<HashSet<(String, String)>>,
}

/// A started server.
pub struct Launched {
    pub url: String,
    pub token: String,
    /// Milliseconds from the spawn request to the hub reporting the server ready.
    pub hub_ms: u64,
}

/// A hub answer: status and JSON body (`{"message": text}` when the body is not JSON).
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The hub's own reason.
    fn reason(&self) -> String {
        let message = self.body["message"]
            .as_str()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| self.status.canonical_reason().unwrap_or("no reason given"));
        format!("HTTP {}: {message}", self.status.as_u16())
    }
}

/// What a name in a URL path keeps unescaped.
const NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A user or server name in a URL path.
fn escape(name: &str) -> String {
    utf8_percent_encode(name, NAME).to_string()
}

/// The API path of a server: `users/<u>/server` for the default one, `users/<u>/servers/<s>` otherwise.
fn server_path(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("users/{}/server", escape(user))
    } else {
        format!("users/{}/servers/{}", escape(user), escape(server))
    }
}

/// A name for a temporary user or named server: the repository's name (lower case, at most `max`
/// characters) and random characters, as BinderHub names them.
pub fn launch_name(repo_url: &str, max: usize) -> String {
    // The path without the scheme and host (`git@host:org/repo` keeps what follows the colon).
    let path = match repo_url.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, p)| p),
        None => repo_url.rsplit_once(':').map_or(repo_url, |(_, p)| p),
    };
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    let tail: Vec<&str> = path.rsplit('/').filter(|p| !p.is_empty()).take(2).collect();
    let raw = tail.into_iter().rev().collect::<Vec<_>>().join("-");
    let mut slug = kiln_builder::source::slugify(&raw);
    slug.truncate(max);
    let slug = slug.trim_end_matches('-');
    let random = &kiln_builder::engine::random_hex()[..8];
    if slug.is_empty() {
        format!("kiln-{random}")
    } else {
        format!("{slug}-{random}")
    }
}

/// The body of a spawn request. JupyterHub 6 reads `{"user_options": {...}}`; earlier hubs take the
/// whole body as the user options (and 6 still does when neither `user_options` nor `display_name`
/// is present).
pub fn spawn_body(hub_major: Option<u64>, options: &Value) -> Value {
    match hub_major {
        Some(major) if major >= 6 => json!({"user_options": options}),
        _ => options.clone(),
    }
}

impl JupyterHub {
    /// The hub launcher of a configuration with `KILN_HUB_URL` and `KILN_HUB_API_TOKEN`.
    pub fn new(config: &Config, store: Arc<Store>) -> Result<Option<JupyterHub>, String> {
        let (Some(public), Some(token)) = (&config.hub_url, &config.hub_api_token) else {
            return Ok(None);
        };
        let public_url = url::Url::parse(public)
            .map_err(|e| format!("KILN_HUB_URL={public:?} is not a URL: {e}"))?;
        let api_url = config
            .hub_api_url
            .clone()
            .unwrap_or_else(|| format!("{public}hub/api/"));
        url::Url::parse(&api_url)
            .map_err(|e| format!("KILN_HUB_API_URL={api_url:?} is not a URL: {e}"))?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(Some(JupyterHub {
            public_url,
            api_url,
            token: token.clone(),
            client,
            launch_timeout: Duration::from_secs(config.launch_timeout_seconds.max(1)),
            token_seconds: config.hub_token_seconds,
            retry_delay: Duration::from_secs(1),
            store,
            launching: Mutex::new(HashSet::new()),
        }))
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// One API call with `token`, retried with backoff while the hub is unreachable or answers 5xx.
    async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let url = format!("{}{path}", self.api_url);
        let mut delay = self.retry_delay;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut request = self
                .client
                .request(method.clone(), &url)
                .header("Authorization", format!("token {token}"))
                .timeout(Duration::from_secs(30));
            if let Some(body) = body {
                request = request.json(body);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    let body = serde_json::from_str(&text)
                        .unwrap_or_else(|_| json!({"message": text.trim()}));
                    let answer = Answer { status, body };
                    if !status.is_server_error() || attempt == ATTEMPTS {
                        return Ok(answer);
                    }
                    last = answer.reason();
                }
                Err(e) => {
                    last = format!("the hub at {} cannot be reached: {}", self.api_url, e);
                    if !(e.is_connect() || e.is_timeout() || e.is_request()) {
                        break;
                    }
                }
            }
            if attempt < ATTEMPTS {
                tracing::warn!(%method, path, attempt, "hub call failed, retrying: {last}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        Err(last)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        self.call_as(&self.token, method, path, body).await
    }

    /// The hub's version (`GET /hub/api/`, which needs no token).
    pub async fn version(&self) -> Result<String, String> {
        let answer = self.call(Method::GET, "", None).await?;
        answer.body["version"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                format!(
                    "the hub's API did not give its version ({})",
                    answer.reason()
                )
            })
    }

    /// Whether kiln's token is accepted: `Ok(())`, or the reason it is not.
    pub async fn check_token(&self) -> Result<(), String> {
        let answer = self.call(Method::GET, "user", None).await?;
        if answer.ok() {
            Ok(())
        } else {
            Err(format!(
                "the hub refused kiln's API token ({}); check KILN_HUB_API_TOKEN",
                answer.reason()
            ))
        }
    }

    /// The hub user a caller's token belongs to.
    pub async fn identify(&self, caller_token: &str) -> Result<String, String> {
        let answer = self
            .call_as(caller_token, Method::GET, "user", None)
            .await?;
        match answer.body["name"].as_str() {
            Some(name) if answer.ok() && answer.body["kind"] == "user" => Ok(name.to_string()),
            _ => Err(format!(
                "the hub did not accept your token as a user's ({})",
                answer.reason()
            )),
        }
    }

    /// Every active server on the hub as `(user, server, image)` (the image from its user options,
    /// empty when it has none).
    pub async fn active_servers(&self) -> Result<Vec<(String, String, String)>, String> {
        let mut servers = Vec::new();
        let mut offset = 0;
        loop {
            let answer = self
                .call(
                    Method::GET,
                    &format!("users?state=active&limit=200&offset={offset}"),
                    None,
                )
                .await?;
            if !answer.ok() {
                return Err(format!("cannot list the hub's users ({})", answer.reason()));
            }
            // A list from hubs before 2.0; `{items, _pagination}` when the hub paginates.
            let items = answer.body["items"]
                .as_array()
                .or(answer.body.as_array())
                .cloned()
                .unwrap_or_default();
            for user in &items {
                let name = user["name"].as_str().unwrap_or_default();
                if let Some(map) = user["servers"].as_object() {
                    for (server, model) in map {
                        let image = model["user_options"]["image"].as_str().unwrap_or_default();
                        servers.push((name.to_string(), server.clone(), image.to_string()));
                    }
                }
            }
            match answer.body["_pagination"]["next"]["offset"].as_u64() {
                Some(next) if !items.is_empty() => offset = next,
                _ => break,
            }
        }
        Ok(servers)
    }

    /// Servers being launched now, as `(user, server)`.
    pub fn launching(&self) -> HashSet<(String, String)> {
        self.launching.lock().expect("launch lock").clone()
    }

    /// Launch `image` with BinderHub's user options (`options` holds `repo_url` and `binder_*`). `user`
    /// is the caller's hub user (a named server), or `None` for a temporary user.
    pub async fn launch(
        &self,
        image: &str,
        options: &Value,
        user: Option<&str>,
        hub_major: Option<u64>,
        events: &mpsc::Sender<Value>,
    ) -> Result<Launched, String> {
        let repo_url = options["repo_url"].as_str().unwrap_or_default();
        let server = match user {
            Some(_) => HubServer {
                user: user.unwrap_or_default().to_string(),
                server: launch_name(repo_url, 20),
                temporary: false,
            },
            None => HubServer {
                user: launch_name(repo_url, 32),
                server: String::new(),
                temporary: true,
            },
        };
        let key = (server.user.clone(), server.server.clone());
        self.launching
            .lock()
            .expect("launch lock")
            .insert(key.clone());
        let result = self.start(&server, image, options, hub_major, events).await;
        self.launching.lock().expect("launch lock").remove(&key);
        if result.is_err() {
            self.clean_up(&server).await;
        }
        result
    }

    async fn start(
        &self,
        server: &HubServer,
        image: &str,
        options: &Value,
        hub_major: Option<u64>,
        events: &mpsc::Sender<Value>,
    ) -> Result<Launched, String> {
        let user_path = format!("users/{}", escape(&server.user));
        if server.temporary {
            let answer = self.call(Method::POST, &user_path, None).await?;
            // 409: the user exists, which for a fresh random name means an earlier attempt made it.
            if !answer.ok() && answer.status != StatusCode::CONFLICT {
                return Err(self.refusal("create a temporary user", &answer));
            }
        }
        self.store.add_hub_server(server);
        let full_name = format!("{}/{}", server.user, server.server);
        let scope = format!("access:servers!server={full_name}");
        let mut request = json!({"scopes": [scope], "note": format!("kiln launch of {image}")});
        if self.token_seconds > 0 {
            request["expires_in"] = json!(self.token_seconds);
        }
        let answer = self
            .call(Method::POST, &format!("{user_path}/tokens"), Some(&request))
            .await?;
        let token = match answer.body["token"].as_str() {
            Some(token) if answer.ok() => token.to_string(),
            _ => return Err(self.refusal("issue a token for the session", &answer)),
        };
        let mut user_options = options.clone();
        user_options["image"] = json!(image);
        user_options["token"] = json!(token);
        let body = spawn_body(hub_major, &user_options);
        let path = server_path(&server.user, &server.server);
        let started = Instant::now();
        let deadline = started + self.launch_timeout;
        let _ = events
            .send(json!({"phase": "launching", "message": format!("Asking the hub to start {full_name} from {image}\n")}))
            .await;
        let wait = self.wait_ready(&path, &body, deadline, events);
        let url_path = match tokio::time::timeout_at(deadline.into(), wait).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(format!(
                    "the server did not start within {} s (KILN_LAUNCH_TIMEOUT); the hub stops it",
                    self.launch_timeout.as_secs()
                ));
            }
        };
        let hub_ms = started.elapsed().as_millis() as u64;
        let url = self.public_url.join(&url_path).map_err(|e| {
            format!("the hub gave a server URL that is not a path ({url_path:?}): {e}")
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
        events: &mpsc::Sender<Value>,
    ) -> Result<String, String> {
        // The spawn request returns when the server is ready or after the hub's own short wait;
        // the progress stream, opened meanwhile, tells what happens.
        let spawn = {
            let (client, url, token, body) = (
                self.client.clone(),
                format!("{}{path}", self.api_url),
                self.token.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .header("Authorization", format!("token {token}"))
                    .json(&body)
                    .send()
                    .await;
                match response {
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        let body = serde_json::from_str(&text)
                            .unwrap_or_else(|_| json!({"message": text.trim()}));
                        Ok(Answer { status, body })
                    }
                    Err(e) => Err(e.to_string()),
                }
            })
        };
        let mut spawn = Some(spawn);
        let mut spawn_answer: Option<Result<Answer, String>> = None;
        let mut streamed = false;
        loop {
            if let Some(handle) = spawn.as_mut().filter(|h| h.is_finished()) {
                spawn_answer = Some(handle.await.unwrap_or_else(|e| Err(e.to_string())));
                spawn = None;
            }
            if let Some(Ok(answer)) = &spawn_answer
                && !answer.ok()
            {
                // 400 "already running/pending" cannot happen for a fresh name: any refusal is final.
                return Err(self.refusal("start the server", answer));
            }
            match self.follow_progress(path, events).await {
                Progress::Ready(url) => return Ok(url),
                Progress::Failed(message) => {
                    return Err(format!("the hub could not start the server: {message}"));
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
                        return Err("the launch timed out".into());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                ServerState::Gone(reason) => {
                    if spawn_answer.is_none()
                        && let Some(handle) = spawn.take()
                    {
                        spawn_answer = Some(
                            tokio::time::timeout(Duration::from_secs(5), handle)
                                .await
                                .map_err(|_| "no answer".to_string())
                                .and_then(|r| r.map_err(|e| e.to_string()))
                                .and_then(|r| r),
                        );
                    }
                    return Err(match spawn_answer {
                        Some(Ok(answer)) if !answer.ok() => {
                            self.refusal("start the server", &answer)
                        }
                        Some(Err(e)) => format!(
                            "the hub stopped answering during the launch (it may have restarted): {e}"
                        ),
                        _ => reason,
                    });
                }
            }
        }
    }

    /// Follow the server's progress stream until it ends.
    async fn follow_progress(&self, path: &str, events: &mpsc::Sender<Value>) -> Progress {
        let response = self
            .client
            .get(format!("{}{path}/progress", self.api_url))
            .header("Authorization", format!("token {}", self.token))
            .header("Accept", "text/event-stream")
            .send()
            .await;
        let response = match response {
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
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let data: String = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect::<Vec<_>>()
                    .join("\n");
                let Ok(event) = serde_json::from_str::<Value>(&data) else {
                    continue;
                };
                let message = event["message"].as_str().unwrap_or_default().to_string();
                if event["failed"] == true {
                    return Progress::Failed(message);
                }
                if event["ready"] == true {
                    let url = event["url"].as_str().unwrap_or_default().to_string();
                    return Progress::Ready(url);
                }
                if !message.is_empty() {
                    let _ = events
                        .send(json!({"phase": "launching", "message": format!("{message}\n"), "progress": event["progress"]}))
                        .await;
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
        match self.call(Method::GET, &user_path, None).await {
            Err(e) => ServerState::Gone(e),
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

    fn refusal(&self, what: &str, answer: &Answer) -> String {
        let hint = match answer.status.as_u16() {
            401 | 403 => "; check KILN_HUB_API_TOKEN and the scopes of kiln's role on the hub",
            _ => "",
        };
        format!("the hub refused to {what} ({}){hint}", answer.reason())
    }

    /// Delete a temporary user, or stop and remove a named server; the record stays for the reaper
    /// when the hub cannot be reached.
    async fn clean_up(&self, server: &HubServer) -> bool {
        let (path, body) = if server.temporary {
            (format!("users/{}", escape(&server.user)), None)
        } else {
            (
                server_path(&server.user, &server.server),
                Some(json!({"remove": true})),
            )
        };
        match self.call(Method::DELETE, &path, body.as_ref()).await {
            Ok(answer) if answer.ok() || answer.status == StatusCode::NOT_FOUND => {
                self.store.remove_hub_server(server);
                true
            }
            Ok(answer) => {
                tracing::warn!(user = %server.user, "cannot clean up a hub server yet: {}", answer.reason());
                false
            }
            Err(e) => {
                tracing::warn!(user = %server.user, "cannot clean up a hub server yet: {e}");
                false
            }
        }
    }

    /// One pass of the reaper: the servers kiln started that the hub no longer runs are cleaned up.
    pub async fn reap(&self) {
        let launching = self.launching();
        for server in self.store.hub_servers() {
            if launching.contains(&(server.user.clone(), server.server.clone())) {
                continue;
            }
            let answer = match self
                .call(
                    Method::GET,
                    &format!("users/{}", escape(&server.user)),
                    None,
                )
                .await
            {
                Ok(a) => a,
                Err(_) => return, // the hub is away: try again next time
            };
            if answer.status == StatusCode::NOT_FOUND {
                self.store.remove_hub_server(&server);
                continue;
            }
            let model = &answer.body["servers"][&server.server];
            let running = model["ready"] == true || model["pending"].is_string();
            if answer.ok() && !running {
                tracing::info!(user = %server.user, server = %server.server, "the hub's server is gone; cleaning up");
                self.clean_up(&server).await;
            }
        }
    }

    /// Reap every `every` until the service stops.
    pub async fn reap_forever(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every.max(Duration::from_secs(1))).await;
            self.reap().await;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_repository_and_random_characters() {
        let name = launch_name("https://github.com/Binder-Examples/Requirements.git", 32);
        assert!(name.starts_with("binder-examples-requirements-"), "{name}");
        assert_eq!(name.len(), "binder-examples-requirements-".len() + 8);
        let long = launch_name(&format!("https://h/{}/{}", "a".repeat(40), "b"), 32);
        assert!(long.len() <= 32 + 9, "{long}");
        assert!(launch_name("", 32).starts_with("kiln-"));
        assert!(launch_name("git://127.0.0.1:9418/one", 32).starts_with("one-"));
        assert!(launch_name("git@host.org:org/r.git", 32).starts_with("org-r-"));
        assert_ne!(
            launch_name("https://h/a/b", 32),
            launch_name("https://h/a/b", 32)
        );
    }

    #[test]
    fn spawn_bodies_for_each_hub() {
        let options = json!({"image": "i:1", "token": "t", "repo_url": "https://h/a/b"});
        assert_eq!(
            spawn_body(Some(6), &options),
            json!({"user_options": options})
        );
        assert_eq!(spawn_body(Some(5), &options), options);
        assert_eq!(spawn_body(None, &options), options);
    }

    #[test]
    fn server_paths() {
        assert_eq!(server_path("u-1", ""), "users/u-1/server");
        assert_eq!(server_path("a@b", "s"), "users/a%40b/servers/s");
    }
}
