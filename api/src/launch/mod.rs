//! Where sessions run. The local launcher starts them on the service's own engine; with
//! `KILN_HUB_URL` and `KILN_HUB_API_TOKEN` the JupyterHub launcher asks a hub to start them. Both
//! check the same quotas first and answer with the same `ready` event.

pub mod jupyterhub;
pub mod local;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kiln_builder::{Event, Ready};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::engine::ContainerEngine;
use crate::error::LaunchError;
use crate::metrics::Metrics;
use crate::spec::Spec;
use crate::store::Store;
use jupyterhub::JupyterHub;
use local::Local;

/// The launchers of a service and what they share.
pub struct Launchers {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    pub local: Arc<Local>,
    pub hub: Option<Arc<JupyterHub>>,
    /// Images of sessions being started (they count towards the quotas).
    starting: Mutex<Vec<String>>,
    /// Held from the quota check to the reservation, so two launches cannot both take the last place.
    quota: tokio::sync::Mutex<()>,
    store: Arc<Store>,
    /// Communities' own hubs (`[hub]`), made when first launched on, by community.
    community_hubs: Mutex<std::collections::HashMap<String, CommunityHub>>,
}

/// A community's hub as made, with what it was made from (a changed file or token makes it
/// again) and its reaper.
struct CommunityHub {
    made_from: (String, Option<String>, String),
    hub: Arc<JupyterHub>,
    reaper: tokio::task::JoinHandle<()>,
}

/// Removes an image from the starting list when its launch ends, however it ends.
struct Reservation<'a> {
    launchers: &'a Launchers,
    image: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut starting = self.launchers.starting();
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
    spec: &Spec,
) -> Option<String> {
    let repo_url = &spec.repo_url;
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
    if let Some(max) = sessions_per_repo(config, spec) {
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

/// The sessions-per-repository limit for a spec: from the longest `KILN_SPEC_CONFIG` pattern that
/// matches it, else `KILN_MAX_SESSIONS_PER_REPO`.
fn sessions_per_repo(config: &Config, spec: &Spec) -> Option<usize> {
    let name = spec.pattern_name();
    config
        .spec_config
        .iter()
        .filter(|q| crate::admission::matches_pattern(&q.pattern, &name))
        .max_by_key(|q| q.pattern.len())
        .map(|q| q.quota)
        .or(config.max_sessions_per_repo)
}

/// What BinderHub tells a session and its client about the launch: `repo_url` and the `binder_*`
/// fields, with the URL and token still to be filled in.
pub fn binder_fields(spec: &Spec, image: &str, launch_host: &str) -> Ready {
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
    Ready {
        url: String::new(),
        token: String::new(),
        image: image.to_string(),
        repo_url: spec.repo_url.clone(),
        binder_ref_url: ref_url,
        binder_launch_host: launch_host.to_string(),
        binder_request: format!("v2/{}/{}", spec.provider, spec.raw),
        binder_persistent_request: persistent,
        hub_spawn_ms: None,
    }
}

/// One launch as a request gives it.
pub struct LaunchRequest<'a> {
    pub spec: &'a Spec,
    pub image: &'a str,
    /// The address the client reached kiln at, with its base path (`binder_launch_host`).
    pub launch_host: &'a str,
    /// The caller's hub user (by their hub token or login): the launch then starts one of their
    /// servers, within their session quota.
    pub user: Option<&'a crate::auth::HubUser>,
    /// Servers that user may run through kiln.
    pub max_user_sessions: usize,
    /// The community the launch came through, when its sessions are counted.
    pub community: Option<CommunitySessions>,
    /// The community's own hub, which the launch goes to instead of the service's hub or engine.
    /// Its users are not the service hub's: the launch starts a temporary user there.
    pub hub: Option<Arc<JupyterHub>>,
}

/// A community's sessions quota: its sessions are those whose image is under its prefix.
#[derive(Clone, Debug)]
pub struct CommunitySessions {
    pub id: String,
    pub prefix: String,
    pub max: usize,
}

impl CommunitySessions {
    /// Why a launch is refused, given the images of the sessions running and starting.
    fn refusal(&self, running: &[String]) -> Option<String> {
        let prefix = self.prefix.to_lowercase();
        let theirs = running.iter().filter(|i| i.starts_with(&prefix)).count();
        (theirs >= self.max).then(|| {
            format!(
                "community {} has {theirs} sessions running, its quota (quotas.sessions = {}); try again when one has stopped",
                self.id, self.max
            )
        })
    }
}

/// What a local session may use (`KILN_SESSION_MEMORY_LIMIT`, `..._CPU_LIMIT`, `..._PIDS_LIMIT`),
/// with every capability dropped; a catalogue's smoke tests run within the same.
pub fn session_resources(config: &Config) -> kiln_builder::engine::Resources {
    kiln_builder::engine::Resources {
        memory: i64::try_from(config.session_memory_limit)
            .ok()
            .filter(|m| *m > 0),
        nano_cpus: Some((config.session_cpu_limit * 1e9) as i64).filter(|c| *c > 0),
        pids: i64::try_from(config.session_pids_limit)
            .ok()
            .filter(|p| *p > 0),
        locked_down: true,
    }
}

impl Launchers {
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        engine: Arc<dyn ContainerEngine>,
        metrics: Arc<Metrics>,
    ) -> Result<Launchers, crate::error::ConfigError> {
        let resources = session_resources(&config);
        Ok(Launchers {
            local: Arc::new(Local::new(
                engine,
                resources,
                Duration::from_secs(config.session_max_age_seconds),
            )),
            hub: JupyterHub::new(&config, store.clone())?.map(Arc::new),
            config,
            metrics,
            starting: Mutex::new(Vec::new()),
            quota: tokio::sync::Mutex::new(()),
            store,
            community_hubs: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Where a community's sessions start: its own hub (`[hub]`, with its token in
    /// `KILN_COMMUNITY_<ID>_HUB_TOKEN`), else `None` (the service's hub or engine). The first
    /// launch on a hub starts its reaper.
    pub fn community_hub(
        &self,
        community: &kiln_catalog::Community,
    ) -> Result<Option<Arc<JupyterHub>>, LaunchError> {
        let Some(hub) = &community.hub else {
            return Ok(None);
        };
        let variable = community.hub_token_variable();
        let token = std::env::var(&variable).ok().filter(|t| !t.is_empty()).ok_or_else(|| {
            LaunchError::Hub(format!(
                "community {} launches on its hub {}, but the service has no token for it: set {variable}",
                community.id, hub.url
            ))
        })?;
        let made_from = (hub.url.clone(), hub.api_url.clone(), token);
        let mut hubs = self
            .community_hubs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(made) = hubs.get(&community.id)
            && made.made_from == made_from
        {
            return Ok(Some(made.hub.clone()));
        }
        let connected = JupyterHub::connect(
            jupyterhub::Hub {
                public: &made_from.0,
                api: made_from.1.as_deref(),
                token: &made_from.2,
                names: ("[hub] url", "[hub] api_url"),
                apart: true,
            },
            &self.config,
            self.store.clone(),
        )
        .map_err(|e| LaunchError::Hub(format!("community {}: {e}", community.id)))?;
        let connected = Arc::new(connected);
        let reaper = tokio::spawn(
            connected
                .clone()
                .reap_forever(Duration::from_secs(self.config.hub_reap_seconds)),
        );
        let replaced = hubs.insert(
            community.id.clone(),
            CommunityHub {
                made_from,
                hub: connected.clone(),
                reaper,
            },
        );
        // A new token for the same hub: the new reaper looks after the same servers. (A hub
        // that moved keeps its old reaper, for the servers kiln started there.)
        if let Some(old) = replaced
            && old.hub.api_url() == connected.api_url()
        {
            old.reaper.abort();
        }
        Ok(Some(connected))
    }

    fn starting(&self) -> MutexGuard<'_, Vec<String>> {
        self.starting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Start the background work: idle culling of local sessions, the hub reaper.
    pub fn spawn_background(&self) {
        tokio::spawn(
            self.local
                .clone()
                .cull_idle(Duration::from_secs(self.config.session_idle_seconds)),
        );
        if let Some(hub) = &self.hub {
            tokio::spawn(
                hub.clone()
                    .reap_forever(Duration::from_secs(self.config.hub_reap_seconds)),
            );
        }
    }

    /// Sessions running (local sessions, or the hub's active servers) and starting.
    pub async fn sessions(&self) -> Result<Vec<String>, LaunchError> {
        self.sessions_on(self.hub.as_ref()).await
    }

    /// Sessions running on `hub` (or the engine, for `None`) and starting.
    async fn sessions_on(&self, hub: Option<&Arc<JupyterHub>>) -> Result<Vec<String>, LaunchError> {
        let mut images = match hub {
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
        images.extend(self.starting().iter().cloned());
        Ok(images)
    }

    /// Whether sessions are counted for quotas (local sessions always; a hub's only when a quota is
    /// set, since counting lists every user of the hub).
    pub fn counts_sessions(&self) -> bool {
        self.hub.is_none()
            || self.config.max_sessions.is_some()
            || self.config.max_sessions_per_repo.is_some()
    }

    /// Why no session can start now, when the total is full (checked before a build for a launch,
    /// as BinderHub does). A hub without a quota set is not asked.
    pub async fn total_quota_refusal(&self) -> Option<String> {
        if self.hub.is_some() && self.config.max_sessions.is_none() {
            return None;
        }
        let running = self.sessions().await.ok()?;
        let max = match &self.hub {
            Some(_) => self.config.max_sessions?,
            None => self.config.max_sessions.unwrap_or(8),
        };
        (running.len() >= max).then(|| {
            format!(
                "Too many sessions are running on this service ({} of {max}); try again later",
                running.len()
            )
        })
    }

    /// The hub's version and whether its major version matches the images' `jupyterhub`
    /// (`None` without a hub).
    pub async fn hub_check(&self) -> Option<Value> {
        let hub = self.hub.as_ref()?;
        let ours = &self.config.jupyterhub_version;
        let check = match hub.version().await {
            Err(e) => {
                json!({"service": "hub", "ok": false, "url": hub.api_url(), "message": e.to_string()})
            }
            Ok(version) => {
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
                    check["message"] = json!(e.to_string());
                }
                check
            }
        };
        Some(check)
    }

    /// Stop every local session the service started (on shutdown). Sessions on a hub stay: the
    /// hub owns them.
    pub async fn stop_local_sessions(&self) {
        self.local.stop_all().await;
    }

    /// Launch a built image for one request; `progress` gets the `launching` events.
    pub async fn launch(
        &self,
        request: LaunchRequest<'_>,
        progress: &mpsc::Sender<Event>,
    ) -> Result<Ready, LaunchError> {
        let started_at = Instant::now();
        let result = self.launch_inner(request, progress).await;
        let metrics = &self.metrics;
        metrics
            .launch_ms_sum
            .fetch_add(started_at.elapsed().as_millis() as u64, Ordering::SeqCst);
        match &result {
            Ok(_) => &metrics.launches_succeeded,
            Err(_) => &metrics.launches_failed,
        }
        .fetch_add(1, Ordering::SeqCst);
        result
    }

    async fn launch_inner(
        &self,
        request: LaunchRequest<'_>,
        progress: &mpsc::Sender<Event>,
    ) -> Result<Ready, LaunchError> {
        let LaunchRequest {
            spec,
            image,
            launch_host,
            user,
            max_user_sessions,
            community,
            hub: community_hub,
        } = request;
        let config = &self.config;
        // Who launches: the caller's hub user, when the launch goes to the service's hub.
        let user = user
            .filter(|_| self.hub.is_some() && community_hub.is_none())
            .map(|u| u.name.as_str());
        let hub = community_hub.as_ref().or(self.hub.as_ref());
        if let (Some(hub), Some(name)) = (hub, user) {
            let theirs = hub
                .sessions_of(name)
                .await
                .map_err(|e| LaunchError::Quota(format!("cannot check your session quota: {e}")))?;
            if max_user_sessions > 0 && theirs >= max_user_sessions {
                return Err(LaunchError::Quota(format!(
                    "you run {theirs} sessions from kiln already (the limit is {max_user_sessions}); stop one from the hub's home page and try again"
                )));
            }
        }
        let reservation = {
            let _quota = self.quota.lock().await;
            // A hub without quotas set needs no count (the hub keeps its own limits); a
            // community's own hub is counted for the community's quota only.
            let counted = match &community_hub {
                None => self.counts_sessions() || community.is_some(),
                Some(_) => community.is_some(),
            };
            let running = match counted {
                false => Vec::new(),
                true => self.sessions_on(hub).await.map_err(|e| {
                    LaunchError::Quota(format!("cannot check the session quotas: {e}"))
                })?,
            };
            let service_quota = match community_hub {
                None => quota_refusal(config, self.hub.is_some(), &running, image, spec),
                Some(_) => None,
            };
            if let Some(refusal) =
                service_quota.or_else(|| community.as_ref().and_then(|c| c.refusal(&running)))
            {
                return Err(LaunchError::Quota(refusal));
            }
            self.starting().push(image.to_string());
            Reservation {
                launchers: self,
                image: image.to_string(),
            }
        };
        let _ = progress
            .send(Event::launching(format!("Launching {image}"), None))
            .await;
        let mut ready = binder_fields(spec, image, launch_host);
        let timeout = Duration::from_secs(config.launch_timeout_seconds.max(1));
        match hub {
            Some(hub) => {
                let major = hub.major_version().await;
                let launched = hub
                    .launch(
                        image,
                        &ready,
                        user.map(|u| (u, config.hub_launch_server)),
                        major,
                        progress,
                    )
                    .await?;
                ready.url = launched.url;
                ready.token = launched.token;
                ready.hub_spawn_ms = Some(launched.hub_ms);
            }
            None => {
                let (url, token) = self.local.launch(image, timeout).await?;
                ready.url = url;
                ready.token = token;
            }
        }
        drop(reservation);
        Ok(ready)
    }
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

    fn spec(repo: &str) -> Spec {
        crate::spec::parse(
            "gh",
            &format!("o/{repo}/HEAD"),
            &crate::spec::ProviderHosts::default(),
        )
        .unwrap()
    }

    #[test]
    fn spec_config_overrides_the_quota_per_repository() {
        let mut c = config();
        c.spec_config = vec![
            crate::config::SpecQuota {
                pattern: "gh/o/*".into(),
                quota: 5,
            },
            crate::config::SpecQuota {
                pattern: "gh/o/closed/*".into(),
                quota: 0,
            },
        ];
        c.max_sessions = None;
        let three: Vec<String> = (0..3).map(|i| format!("r/a:{i}")).collect();
        // The default (2) would refuse a third; gh/o/* allows five.
        assert!(quota_refusal(&c, true, &three, "r/a:9", &spec("a")).is_none());
        // The longer pattern wins: closed to launches.
        let refusal = quota_refusal(&c, true, &[], "r/closed:1", &spec("closed")).unwrap();
        assert!(refusal.contains("(0 of 0)"), "{refusal}");
        c.spec_config.clear();
        assert!(quota_refusal(&c, true, &three, "r/a:9", &spec("a")).is_some());
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
        let refusal = quota_refusal(&c, true, &running, "r/a:3", &spec("a")).unwrap();
        assert!(
            refusal.contains("Too many sessions of https://github.com/o/a are running (2 of 2)"),
            "{refusal}"
        );
        assert!(quota_refusal(&c, true, &running, "r/b:1", &spec("b")).is_none());
        let full = vec!["x:1".to_string(), "y:1".to_string(), "z:1".to_string()];
        let refusal = quota_refusal(&c, true, &full, "r/b:1", &spec("b")).unwrap();
        assert!(refusal.contains("(3 of 3)"), "{refusal}");
        let mut open = c.clone();
        open.max_sessions = None;
        open.max_sessions_per_repo = None;
        assert!(quota_refusal(&open, true, &full, "x:2", &spec("x")).is_none());
        // Local sessions have a default cap of 8.
        let eight: Vec<String> = (0..8).map(|i| format!("i:{i}")).collect();
        assert!(quota_refusal(&open, false, &eight, "j:1", &spec("j")).is_some());
    }
}
