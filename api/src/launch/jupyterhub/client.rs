//! The hub's REST API: one call path for every request kiln makes to the hub, with a timeout, and
//! retries with backoff while the hub is unreachable (and, for requests that may be repeated, while
//! it answers 5xx).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::config::Secret;
use crate::error::LaunchError;

/// Attempts of one hub API call.
const ATTEMPTS: u32 = 4;
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a request may be sent again after the hub answered it with a 5xx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Reads, and writes that give the same result twice (create a user, delete, issue a token).
    OnServerErrors,
    /// Only when it never reached the hub (a spawn: a second request would be refused as pending).
    OnlyUnsent,
}

/// A hub answer: status and JSON body (`{"message": text}` when the body is not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The hub itself says there is no such user or server: a 404 in the hub's API error format
    /// (`{"status": 404, "message": …}`). The proxy in front of a hub that is starting answers
    /// 404 too, for every path, before the hub's route exists: that is not an answer about a user.
    pub fn hub_says_not_found(&self) -> bool {
        self.status == StatusCode::NOT_FOUND && self.body["status"].as_u64() == Some(404)
    }

    /// The hub's own reason.
    pub fn reason(&self) -> String {
        let message = self.body["message"]
            .as_str()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| self.status.canonical_reason().unwrap_or("no reason given"));
        format!("HTTP {}: {message}", self.status.as_u16())
    }
}

/// A client of one hub's API with kiln's service token.
#[derive(Clone)]
pub struct HubClient {
    /// Ends in `/`, such as `http://127.0.0.1:8000/hub/api/`.
    pub api_url: String,
    token: Secret,
    http: reqwest::Client,
    /// First delay between attempts; it doubles each time.
    retry_delay: Duration,
}

impl HubClient {
    pub fn new(api_url: String, token: Secret) -> Result<HubClient, reqwest::Error> {
        Ok(HubClient {
            api_url,
            token,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()?,
            retry_delay: Duration::from_secs(1),
        })
    }

    /// A call with kiln's token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Answer, LaunchError> {
        self.call_as(self.token.expose(), method, path, body, retry)
            .await
    }

    /// A call with `token` (a caller's, to learn who they are).
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Answer, LaunchError> {
        let url = format!("{}{path}", self.api_url);
        let mut delay = self.retry_delay;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("Authorization", format!("token {token}"))
                .timeout(CALL_TIMEOUT);
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
                    let again = status.is_server_error() && retry == Retry::OnServerErrors;
                    if !again || attempt == ATTEMPTS {
                        return Ok(answer);
                    }
                    last = answer.reason();
                }
                Err(e) => {
                    last = format!("the hub at {} cannot be reached: {e}", self.api_url);
                    // A request that may have reached the hub is not sent twice unless repeatable.
                    let unsent = e.is_connect();
                    let repeatable = retry == Retry::OnServerErrors
                        && (e.is_connect() || e.is_timeout() || e.is_request());
                    if !(unsent || repeatable) {
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
        Err(LaunchError::Hub(last))
    }

    /// A form posted without a token (the OAuth token endpoint, where kiln's token is the client
    /// secret in the form), not retried: a code is good for one exchange.
    pub async fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<Answer, LaunchError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .http
            .post(format!("{}{path}", self.api_url))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                LaunchError::Hub(format!(
                    "the hub at {} cannot be reached: {e}",
                    self.api_url
                ))
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({"message": text.trim()}));
        Ok(Answer { status, body })
    }

    /// kiln's own token (the OAuth client secret).
    pub fn token(&self) -> &Secret {
        &self.token
    }

    /// The server-sent events of a server's spawn progress (`GET <path>/progress`).
    pub async fn progress(&self, path: &str) -> Result<reqwest::Response, reqwest::Error> {
        self.http
            .get(format!("{}{path}/progress", self.api_url))
            .header("Authorization", format!("token {}", self.token.expose()))
            .header("Accept", "text/event-stream")
            .send()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hubs_own_404_says_a_user_is_gone() {
        let hub = Answer {
            status: StatusCode::NOT_FOUND,
            body: json!({"status": 404, "message": "Not Found"}),
        };
        assert!(hub.hub_says_not_found());
        // configurable-http-proxy before the hub's route is added: a 404 page, not the hub's JSON.
        let proxy = Answer {
            status: StatusCode::NOT_FOUND,
            body: json!({"message": "<html><body>404: Not Found</body></html>"}),
        };
        assert!(!proxy.hub_says_not_found());
    }
}
