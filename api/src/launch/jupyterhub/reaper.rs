//! The reaper: every server kiln starts is recorded in the state database; once the hub no longer
//! runs one (stopped by its culler, by the user, or after a failed launch), or its launch failed
//! while the hub could not be reached (a restarted hub may resume that spawn), kiln deletes the
//! temporary user, or removes the named server from the hub user's list.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use super::JupyterHub;
use super::client::Retry;
use super::names::{server_path, user_path};
use crate::store::HubServer;

impl JupyterHub {
    /// Delete a temporary user, or stop and remove a named server; the record stays for the reaper
    /// when the hub cannot be reached.
    pub(super) async fn clean_up(&self, server: &HubServer) -> bool {
        let (path, body) = if server.temporary {
            (user_path(&server.user), None)
        } else if server.server.is_empty() {
            // A user's default server is stopped, never removed.
            (server_path(&server.user, ""), None)
        } else {
            (
                server_path(&server.user, &server.server),
                Some(json!({"remove": true})),
            )
        };
        match self
            .client
            .call(Method::DELETE, &path, body.as_ref(), Retry::OnServerErrors)
            .await
        {
            Ok(answer) if answer.ok() || answer.hub_says_not_found() => {
                match self.store.remove_hub_server(server).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(user = %server.user, "cannot forget a hub server: {e}");
                        false
                    }
                }
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
        let servers = match self.store.hub_servers(&self.store_key).await {
            Ok(servers) => servers,
            Err(e) => {
                tracing::error!("cannot read the hub servers kiln started: {e}");
                return;
            }
        };
        for server in servers {
            if launching.contains(&(server.user.clone(), server.server.clone())) {
                continue;
            }
            let answer = match self
                .client
                .call(
                    Method::GET,
                    &user_path(&server.user),
                    None,
                    Retry::OnServerErrors,
                )
                .await
            {
                Ok(a) => a,
                Err(_) => return, // the hub is away: try again next time
            };
            if answer.hub_says_not_found() {
                if let Err(e) = self.store.remove_hub_server(&server).await {
                    tracing::error!(user = %server.user, "cannot forget a hub server: {e}");
                }
                continue;
            }
            let model = &answer.body["servers"][&server.server];
            let running = model["ready"] == true || model["pending"].is_string();
            if answer.ok() && (!running || server.failed) {
                tracing::info!(user = %server.user, server = %server.server, failed = server.failed, "the hub's server is gone, or its launch failed; cleaning up");
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
