//! The JupyterHub launcher: kiln asks a hub to start a server with the built image, through the hub's
//! REST API, as BinderHub does, so the hub keeps authentication, quotas, culling and storage.
//!
//! - [`client`]: the one call path to the hub's API (timeouts, retries);
//! - [`names`]: the users and servers kiln creates, and the spawn request;
//! - [`spawn`]: one launch: a temporary user (anonymous launches) or a named server of the caller's
//!   hub user, a hub token that opens only that server, the spawn with BinderHub's user options,
//!   the hub's progress relayed as `launching` events, and the server's URL and token;
//! - [`reaper`]: every server kiln starts is recorded in the state database until the hub no longer
//!   has it; then kiln deletes the temporary user (or removes the named server).

mod client;
mod names;
mod reaper;
mod spawn;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use reqwest::Method;

use crate::auth::{HubUser, TokenOutcome};
use crate::config::Config;
use crate::error::{ConfigError, LaunchError};
use crate::store::Store;
use client::{Answer, HubClient, Retry};

pub use names::{launch_name, server_path, spawn_body};
pub use spawn::Launched;

pub struct JupyterHub {
    /// The hub's public address, ending in `/` (the `ready` URL starts with it).
    public_url: url::Url,
    client: HubClient,
    launch_timeout: Duration,
    token_seconds: u64,
    store: Arc<Store>,
    /// kiln's name as a service of the hub (`KILN_HUB_SERVICE_NAME`): the scope callers' tokens need.
    service_name: String,
    /// Servers being launched: the reaper leaves them alone.
    launching: Mutex<HashSet<(String, String)>>,
    /// Which hub its servers are recorded under: empty for the service's own.
    store_key: String,
    /// The hub's version, once read.
    version: Mutex<Option<String>>,
}

/// Where a hub is and how kiln calls it.
pub struct Hub<'a> {
    /// Its public address, ending in `/`.
    pub public: &'a str,
    /// Its API, when not `<public>hub/api/`.
    pub api: Option<&'a str>,
    pub token: &'a str,
    /// The settings these came from, for error messages.
    pub names: (&'a str, &'a str),
    /// A community's hub: its servers are recorded under its API URL, apart from the service's.
    pub apart: bool,
}

/// A JSON list of names, when it is one.
fn names(value: &serde_json::Value) -> Option<Vec<String>> {
    value.as_array().map(|items| {
        items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    })
}

impl JupyterHub {
    /// The hub launcher of a configuration with `KILN_HUB_URL` and `KILN_HUB_API_TOKEN`.
    pub fn new(config: &Config, store: Arc<Store>) -> Result<Option<JupyterHub>, ConfigError> {
        let (Some(public), Some(token)) = (&config.hub_url, &config.hub_api_token) else {
            return Ok(None);
        };
        let hub = Hub {
            public,
            api: config.hub_api_url.as_deref(),
            token: token.expose(),
            names: ("KILN_HUB_URL", "KILN_HUB_API_URL"),
            apart: false,
        };
        JupyterHub::connect(hub, config, store).map(Some)
    }

    /// A launcher for one hub: the service's, or a community's (its servers recorded apart).
    pub fn connect(
        hub: Hub<'_>,
        config: &Config,
        store: Arc<Store>,
    ) -> Result<JupyterHub, ConfigError> {
        let (public, api) = hub.names;
        let public_url = url::Url::parse(hub.public).map_err(|e| {
            ConfigError::Invalid(format!("{public}={:?} is not a URL: {e}", hub.public))
        })?;
        let api_url = hub
            .api
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}hub/api/", hub.public));
        url::Url::parse(&api_url)
            .map_err(|e| ConfigError::Invalid(format!("{api}={api_url:?} is not a URL: {e}")))?;
        let store_key = match hub.apart {
            true => api_url.clone(),
            false => String::new(),
        };
        let client = HubClient::new(api_url, crate::config::Secret::new(hub.token))
            .map_err(|e| ConfigError::Invalid(format!("cannot make an HTTP client: {e}")))?;
        Ok(JupyterHub {
            public_url,
            client,
            launch_timeout: Duration::from_secs(config.launch_timeout_seconds.max(1)),
            token_seconds: config.hub_token_seconds,
            store,
            service_name: config.hub_service_name.clone(),
            launching: Mutex::new(HashSet::new()),
            store_key,
            version: Mutex::new(None),
        })
    }

    /// The hub's version as last read (by [`JupyterHub::version`]).
    pub fn known_version(&self) -> Option<String> {
        self.version
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The hub's major version, asked of the hub when not known yet.
    pub async fn major_version(&self) -> Option<u64> {
        let version = match self.known_version() {
            Some(version) => version,
            None => self.version().await.ok()?,
        };
        kiln_buildpacks::options::major_version(&version)
    }

    pub fn api_url(&self) -> &str {
        &self.client.api_url
    }

    fn launching_set(&self) -> MutexGuard<'_, HashSet<(String, String)>> {
        self.launching
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Servers being launched now, as `(user, server)`.
    pub fn launching(&self) -> HashSet<(String, String)> {
        self.launching_set().clone()
    }

    /// The hub's version (`GET /hub/api/`, which needs no token).
    pub async fn version(&self) -> Result<String, LaunchError> {
        let answer = self
            .client
            .call(Method::GET, "", None, Retry::OnServerErrors)
            .await?;
        let version = answer.body["version"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                LaunchError::Hub(format!(
                    "the hub's API did not give its version ({})",
                    answer.reason()
                ))
            })?;
        *self
            .version
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(version.clone());
        Ok(version)
    }

    /// Whether kiln's token is accepted: `Ok(())`, or the reason it is not.
    pub async fn check_token(&self) -> Result<(), LaunchError> {
        let answer = self
            .client
            .call(Method::GET, "user", None, Retry::OnServerErrors)
            .await?;
        if answer.ok() {
            Ok(())
        } else {
            Err(LaunchError::Hub(format!(
                "the hub refused kiln's API token ({}); check KILN_HUB_API_TOKEN",
                answer.reason()
            )))
        }
    }

    /// Whose `caller_token` is, and whether it may be used with kiln: the hub must know it as a
    /// user's, and its scopes (as the hub reports them) must include `access:services` or
    /// `access:services!service=<kiln's name>`. A token that only opens one server (such as the one
    /// a launch hands out) does not. The user's groups come from their token's answer, or, with
    /// `want_groups`, from kiln's own reading of the user. `Err` only when the hub cannot be asked.
    pub async fn identify(
        &self,
        caller_token: &str,
        want_groups: bool,
    ) -> Result<TokenOutcome, LaunchError> {
        let answer = self
            .client
            .call_as(
                caller_token,
                Method::GET,
                "user",
                None,
                Retry::OnServerErrors,
            )
            .await?;
        if answer.status.is_server_error() {
            return Err(LaunchError::Hub(format!(
                "the hub could not check your token ({})",
                answer.reason()
            )));
        }
        let name = match answer.body["name"].as_str() {
            Some(name) if answer.ok() && answer.body["kind"] == "user" => name.to_string(),
            Some(_) if answer.ok() => {
                return Ok(TokenOutcome::Refused {
                    status: 403,
                    reason:
                        "this token is not a hub user's (a service's tokens cannot build as a user)"
                            .into(),
                });
            }
            _ => {
                return Ok(TokenOutcome::Refused {
                    status: 401,
                    reason: format!(
                        "the hub did not accept your token: it may have expired or been revoked ({})",
                        answer.reason()
                    ),
                });
            }
        };
        let scopes: Vec<&str> = answer.body["scopes"]
            .as_array()
            .map(|s| s.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let wanted = format!("access:services!service={}", self.service_name);
        if !scopes
            .iter()
            .any(|s| *s == "access:services" || *s == wanted)
        {
            return Ok(TokenOutcome::Refused {
                status: 403,
                reason: format!(
                    "your hub token may not be used with kiln: it lacks the scope {wanted} (or access:services); \
                     ask the hub's administrator to grant it to users, or make a token that has it"
                ),
            });
        }
        let mut groups = names(&answer.body["groups"]);
        if groups.is_none() && want_groups {
            let theirs = self
                .client
                .call(
                    Method::GET,
                    &names::user_path(&name),
                    None,
                    Retry::OnServerErrors,
                )
                .await?;
            if !theirs.ok() {
                return Err(self.refusal("read the user's groups", &theirs));
            }
            groups = names(&theirs.body["groups"]);
        }
        Ok(TokenOutcome::User(HubUser {
            name,
            groups: groups.unwrap_or_default(),
        }))
    }

    /// The access token the hub gives for an OAuth `code` (the login's callback), kiln being the
    /// OAuth client `client_id` with its API token as the secret.
    pub async fn exchange_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
    ) -> Result<String, LaunchError> {
        let secret = self.client.token().clone();
        let answer = self
            .client
            .post_form(
                "oauth2/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("client_id", client_id),
                    ("client_secret", secret.expose()),
                    ("redirect_uri", redirect_uri),
                ],
            )
            .await?;
        match answer.body["access_token"].as_str() {
            Some(token) if answer.ok() => Ok(token.to_string()),
            _ => Err(LaunchError::Hub(format!(
                "the hub did not exchange the login code ({}); log in again",
                answer.reason()
            ))),
        }
    }

    /// The hub's public address (ends in `/`).
    pub fn public_url(&self) -> &url::Url {
        &self.public_url
    }

    /// How many running or starting servers of `user` kiln launched (they carry an image in their
    /// user options).
    pub async fn sessions_of(&self, user: &str) -> Result<usize, LaunchError> {
        let answer = self
            .client
            .call(
                Method::GET,
                &names::user_path(user),
                None,
                Retry::OnServerErrors,
            )
            .await?;
        if answer.hub_says_not_found() {
            return Ok(0);
        }
        if !answer.ok() {
            return Err(self.refusal("read the user's servers", &answer));
        }
        Ok(answer.body["servers"]
            .as_object()
            .map(|servers| {
                servers
                    .values()
                    .filter(|m| m["user_options"]["image"].is_string())
                    .filter(|m| m["ready"] == true || m["pending"].is_string())
                    .count()
            })
            .unwrap_or(0))
    }

    /// Every active server on the hub as `(user, server, image)` (the image from its user options,
    /// empty when it has none).
    pub async fn active_servers(&self) -> Result<Vec<(String, String, String)>, LaunchError> {
        let mut servers = Vec::new();
        let mut offset = 0;
        loop {
            let answer = self
                .client
                .call(
                    Method::GET,
                    &format!("users?state=active&limit=200&offset={offset}"),
                    None,
                    Retry::OnServerErrors,
                )
                .await?;
            if !answer.ok() {
                return Err(LaunchError::Hub(format!(
                    "cannot list the hub's users ({})",
                    answer.reason()
                )));
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

    fn refusal(&self, what: &str, answer: &Answer) -> LaunchError {
        let hint = match answer.status.as_u16() {
            401 | 403 => "; check KILN_HUB_API_TOKEN and the scopes of kiln's role on the hub",
            _ => "",
        };
        LaunchError::Hub(format!(
            "the hub refused to {what} ({}){hint}",
            answer.reason()
        ))
    }
}
