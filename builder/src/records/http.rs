//! The one way records are fetched: kiln-net's guarded client (every name resolved through the
//! address policy, every redirect hop checked), 5xx answers tried again, JSON answers bounded.

use std::time::Duration;

use crate::error::BuildError;
use crate::git::FetchSettings;

use super::failed;

const RETRIES: u32 = 3;

/// The guarded client and the policy it enforces (a URL with an IP literal is checked here: it
/// reaches no resolver).
pub(super) struct Http {
    client: reqwest::Client,
    policy: kiln_net::Policy,
}

impl Http {
    pub(super) fn new(settings: &FetchSettings) -> Result<Http, BuildError> {
        let options = kiln_net::http::Options {
            timeout: Some(settings.limits.timeout),
            ..kiln_net::http::Options::default()
        };
        let client = kiln_net::http::guarded_client(&settings.policy, &options)
            .map_err(|e| BuildError::Invalid(format!("cannot make the HTTP client: {e}")))?;
        Ok(Http {
            client,
            policy: settings.policy.clone(),
        })
    }

    /// GET `url`; a 5xx answer or a broken connection is tried again (three times in all), a
    /// refusal by the address policy is not.
    pub(super) async fn get(&self, url: &str) -> Result<reqwest::Response, BuildError> {
        self.send(reqwest::Method::GET, url).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::Response, BuildError> {
        let parsed =
            url::Url::parse(url).map_err(|e| failed(url, format!("not a valid URL: {e}"), 400))?;
        kiln_net::http::check(&self.policy, &parsed).map_err(|e| BuildError::Refused {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let answer = self
                .client
                .request(method.clone(), parsed.clone())
                .header("Accept", "application/json")
                .send()
                .await;
            match answer {
                Ok(response) if response.status().is_server_error() && attempt < RETRIES => {}
                Ok(response) if response.status().is_server_error() => {
                    return Err(failed(
                        url,
                        format!("the server answered {} {RETRIES} times", response.status()),
                        502,
                    ));
                }
                Ok(response) => return Ok(response),
                Err(e) => {
                    if let Some(refusal) = kiln_net::http::guard_error(&e) {
                        return Err(BuildError::Refused {
                            url: url.to_string(),
                            reason: refusal.to_string(),
                        });
                    }
                    if attempt >= RETRIES {
                        return Err(failed(url, e.without_url().to_string(), 502));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))).await;
        }
    }

    /// GET `url` as JSON of at most 4 MiB; `what` names it in errors.
    pub(super) async fn json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<T, BuildError> {
        self.answer(reqwest::Method::GET, url, what).await
    }

    /// POST to `url` (no body), its answer as JSON, as [`Http::json`].
    pub(super) async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<T, BuildError> {
        self.answer(reqwest::Method::POST, url, what).await
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: &str,
        what: &str,
    ) -> Result<T, BuildError> {
        let mut response = self.send(method, url).await?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            404 => return Err(failed(url, format!("{what} does not exist (404)"), 404)),
            410 => {
                return Err(failed(
                    url,
                    format!("{what} was withdrawn or deleted (410 Gone)"),
                    404,
                ));
            }
            401 | 403 => {
                return Err(failed(
                    url,
                    format!(
                        "{what} is restricted or embargoed ({status}): kiln fetches open records only"
                    ),
                    403,
                ));
            }
            _ => {
                return Err(failed(
                    url,
                    format!("{what}: the server answered {status}"),
                    502,
                ));
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed(url, e.without_url().to_string(), 502))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > 4 << 20 {
                return Err(failed(url, format!("{what} is larger than 4 MiB"), 502));
            }
        }
        serde_json::from_slice(&body).map_err(|e| {
            failed(
                url,
                format!("{what} is not what the API documents: {e}"),
                502,
            )
        })
    }
}
