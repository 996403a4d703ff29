//! Where sessions run. The local launcher starts them on the service's own engine; with
//! `KILN_HUB_URL` and `KILN_HUB_API_TOKEN` the JupyterHub launcher asks a hub to start them. Both
//! check the same quotas first and answer with the same `ready` event.

pub mod jupyterhub;
pub mod local;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::spec::Spec;
use crate::store::Store;
use crate::{AppState, failed};
use jupyterhub::JupyterHub;
use local::Local;

/// The launchers of a service and what they share.
pub struct Launchers {
    pub local: Arc<Local>,
    pub hub: Option<Arc<JupyterHub>>,
    /// Images of sessions being started (they count towards the quotas).
    starting: Mutex<Vec<String>>,
    /// Held from the quota check to the reservation, so two launches cannot both take the last place.
    quota: tokio::sync::Mutex<()>,
    /// The hub's version, once known.
    hub_version: Mutex<Option<String>>,
}

/// Removes an image from the starting list when its launch ends, however it ends.
struct Reservation<'a> {
    launchers: &'a Launchers,
    image: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut starting = self.launchers.starting.lock().expect("launch lock");
        if let Some(i) = starting.iter().position(|i| *i == self.image) {
            starting.remove(i);
        }
    }
}

/// An image's repository: the name without its tag or digest.
fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// Why a launch of `image` is refused, given the images of the sessions running and starting.
pub fn quota_refusal(
    config: &Config,
    hub: bool,
    running: &[String],
    image: &str,
    repo_url: &str,
) -> Option<String> {
    let max_total = if hub {
        config.max_sessions
    } else {
        Some(config.max_sessions.unwrap_or(8))
    };
    if let Some(max) = max_total
        && running.len() >= max
    {
        return Some(format!(
            "Too many sessions are running on this service ({} of {max}); try again later",
            running.len()
        ));
    }
    if let Some(max) = config.max_sessions_per_repo {
        let same = running
            .iter()
            .filter(|i| repository(i) == repository(image))
            .count();
        if same >= max {
            return Some(format!(
                "Too many sessions of {repo_url} are running ({same} of {max}); try again later"
            ));
        }
    }
    None
}

/// What BinderHub tells a session and its client about the launch.
pub fn binder_fields(spec: &Spec, image: &str, host: &str) -> Value {
    let commit = image
        .rsplit_once(':')
        .map(|(_, t)| t)
        .filter(|t| t.len() == 40)
        .unwrap_or(&spec.reference);
    let persistent = match spec.raw.rsplit_once('/') {
        Some((repo, _)) if spec.provider != "gh" => format!("v2/{}/{repo}/{commit}", spec.provider),
        _ => {
            let parts: Vec<&str> = spec.raw.splitn(3, '/').collect();
            format!(
                "v2/{}/{}/{}/{commit}",
                spec.provider,
                parts.first().unwrap_or(&""),
                parts.get(1).unwrap_or(&"")
            )
        }
    };
    let ref_url = if spec.provider == "gh" {
        format!("{}/tree/{commit}", spec.repo_url)
    } else {
        spec.repo_url.clone()
    };
    json!({
        "repo_url": spec.repo_url,
        "binder_ref_url": ref_url,
        "binder_launch_host": format!("http://{host}/"),
        "binder_request": format!("v2/{}/{}", spec.provider, spec.raw),
        "binder_persistent_request": persistent,
    })
}

/// One launch as a request gives it.
pub struct LaunchRequest<'a> {
    pub spec: &'a Spec,
    pub image: &'a str,
    /// The `Host` the client used (for `binder_launch_host`).
    pub host: &'a str,
    /// A hub token the caller sent (`Authorization: token ...` or `Bearer ...`): the launch then uses
    /// a named server of that hub user.
    pub caller_token: Option<&'a str>,
}

impl Launchers {
    pub fn new(config: &Config, store: Arc<Store>) -> Result<Launchers, String> {
        Ok(Launchers {
            local: Arc::new(Local::default()),
            hub: JupyterHub::new(config, store)?.map(Arc::new),
            starting: Mutex::new(Vec::new()),
            quota: tokio::sync::Mutex::new(()),
            hub_version: Mutex::new(None),
        })
    }

    /// Start the background work: idle culling of local sessions, the hub reaper.
    pub fn spawn_background(&self, config: &Config) {
        tokio::spawn(
            self.local
                .clone()
                .cull_idle(Duration::from_secs(config.session_idle_seconds)),
        );
        if let Some(hub) = &self.hub {
            tokio::spawn(
                hub.clone()
                    .reap_forever(Duration::from_secs(config.hub_reap_seconds)),
            );
        }
    }

    /// Sessions running (local sessions, or the hub's active servers) and starting.
    pub async fn sessions(&self) -> Result<Vec<String>, String> {
        let mut images = match &self.hub {
            Some(hub) => {
                let launching = hub.launching();
                hub.active_servers()
                    .await?
                    .into_iter()
                    .filter(|(u, s, _)| !launching.contains(&(u.clone(), s.clone())))
                    .map(|(_, _, image)| image)
                    .collect()
            }
            None => self.local.images(),
        };
        images.extend(self.starting.lock().expect("launch lock").iter().cloned());
        Ok(images)
    }

    /// The hub's version and whether its major version matches the images' `jupyterhub`
    /// (`None` without a hub).
    pub async fn hub_check(&self, config: &Config) -> Option<Value> {
        let hub = self.hub.as_ref()?;
        let ours = &config.jupyterhub_version;
        let check = match hub.version().await {
            Err(e) => json!({"service": "hub", "ok": false, "url": hub.api_url(), "message": e}),
            Ok(version) => {
                *self.hub_version.lock().expect("hub lock") = Some(version.clone());
                let (theirs, mine) = (
                    kiln_buildpacks::options::major_version(&version),
                    kiln_buildpacks::options::major_version(ours),
                );
                let token = hub.check_token().await;
                let mut check = json!({
                    "service": "hub", "url": hub.api_url(), "version": version,
                    "singleuser_version": ours, "ok": theirs == mine && token.is_ok(),
                });
                if theirs != mine {
                    check["message"] = json!(format!(
                        "the hub runs JupyterHub {version} but images get jupyterhub-singleuser {ours}: \
                         the major versions must match (set KILN_JUPYTERHUB_VERSION)"
                    ));
                } else if let Err(e) = token {
                    check["message"] = json!(e);
                }
                check
            }
        };
        Some(check)
    }

    fn hub_major(&self) -> Option<u64> {
        let version = self.hub_version.lock().expect("hub lock").clone()?;
        kiln_buildpacks::options::major_version(&version)
    }
}

/// Launch a built image for one request and report it `ready` (or `failed`); `Err` means the
/// client went away.
pub async fn launch(
    state: &AppState,
    request: LaunchRequest<'_>,
    tx: &mpsc::Sender<Value>,
) -> Result<(), ()> {
    let send = |value: Value| async move { tx.send(value).await.map_err(|_| ()) };
    let launchers = &state.launchers;
    let config = &state.hub.config;
    let LaunchRequest {
        spec,
        image,
        host,
        caller_token,
    } = request;
    let started_at = Instant::now();
    // Who launches: the caller's hub user when they sent a hub token.
    let user = match (&launchers.hub, caller_token) {
        (Some(hub), Some(token)) => match hub.identify(token).await {
            Ok(name) => Some(name),
            Err(e) => return send(failed(e)).await,
        },
        _ => None,
    };
    let reservation = {
        let _quota = launchers.quota.lock().await;
        // A hub without quotas set needs no count (the hub keeps its own limits).
        let counted = launchers.hub.is_none()
            || config.max_sessions.is_some()
            || config.max_sessions_per_repo.is_some();
        let running = match counted {
            false => Vec::new(),
            true => match launchers.sessions().await {
                Ok(r) => r,
                Err(e) => {
                    return send(failed(format!("cannot check the session quotas: {e}"))).await;
                }
            },
        };
        if let Some(refusal) = quota_refusal(
            config,
            launchers.hub.is_some(),
            &running,
            image,
            &spec.repo_url,
        ) {
            return send(failed(refusal)).await;
        }
        launchers
            .starting
            .lock()
            .expect("launch lock")
            .push(image.to_string());
        Reservation {
            launchers,
            image: image.to_string(),
        }
    };
    send(json!({"phase": "launching", "message": format!("Launching {image}\n")})).await?;
    let fields = binder_fields(spec, image, host);
    let timeout = Duration::from_secs(config.launch_timeout_seconds.max(1));
    let result = match &launchers.hub {
        Some(hub) => {
            if launchers.hub_major().is_none() {
                let _ = launchers.hub_check(config).await;
            }
            hub.launch(image, &fields, user.as_deref(), launchers.hub_major(), tx)
                .await
                .map(|l| (l.url, l.token, Some(l.hub_ms)))
        }
        None => launchers
            .local
            .launch(&state.hub.engine, image, timeout)
            .await
            .map(|(url, token)| (url, token, None)),
    };
    drop(reservation);
    let metrics = &state.hub.metrics;
    metrics
        .launch_ms_sum
        .fetch_add(started_at.elapsed().as_millis() as u64, Ordering::SeqCst);
    let (url, token, hub_ms) = match result {
        Ok(launched) => {
            metrics.launches_succeeded.fetch_add(1, Ordering::SeqCst);
            launched
        }
        Err(e) => {
            metrics.launches_failed.fetch_add(1, Ordering::SeqCst);
            return send(failed(e)).await;
        }
    };
    let mut ready = json!({
        "phase": "ready",
        "message": format!("server running at {url}\n"),
        "url": url,
        "token": token,
        "image": image,
    });
    if let (Some(ready), Some(fields)) = (ready.as_object_mut(), fields.as_object()) {
        ready.extend(fields.clone());
    }
    if let Some(ms) = hub_ms {
        ready["hub_spawn_ms"] = json!(ms);
    }
    send(ready).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut c = Config::load(None).unwrap();
        c.max_sessions = Some(3);
        c.max_sessions_per_repo = Some(2);
        c
    }

    #[test]
    fn repositories_ignore_tags_and_digests() {
        assert_eq!(
            repository("127.0.0.1:5000/kiln/a-b:abc"),
            "127.0.0.1:5000/kiln/a-b"
        );
        assert_eq!(
            repository("127.0.0.1:5000/kiln/a-b"),
            "127.0.0.1:5000/kiln/a-b"
        );
        assert_eq!(repository("kiln/a@sha256:00"), "kiln/a");
    }

    #[test]
    fn quotas_total_and_per_repository() {
        let c = config();
        let running = vec!["r/a:1".to_string(), "r/a:2".to_string()];
        let refusal = quota_refusal(&c, true, &running, "r/a:3", "https://h/a").unwrap();
        assert!(
            refusal.contains("Too many sessions of https://h/a are running (2 of 2)"),
            "{refusal}"
        );
        assert!(quota_refusal(&c, true, &running, "r/b:1", "https://h/b").is_none());
        let full = vec!["x:1".to_string(), "y:1".to_string(), "z:1".to_string()];
        let refusal = quota_refusal(&c, true, &full, "r/b:1", "https://h/b").unwrap();
        assert!(refusal.contains("(3 of 3)"), "{refusal}");
        let mut open = c.clone();
        open.max_sessions = None;
        open.max_sessions_per_repo = None;
        assert!(quota_refusal(&open, true, &full, "x:2", "u").is_none());
        // Local sessions have a default cap of 8.
        let eight: Vec<String> = (0..8).map(|i| format!("i:{i}")).collect();
        assert!(quota_refusal(&open, false, &eight, "j:1", "u").is_some());
    }
}
