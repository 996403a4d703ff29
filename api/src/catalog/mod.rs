//! Communities and their catalogues in the service: the communities folder, watched (a changed
//! file is read again at the next request or tick; a broken one is reported and left out while
//! the others keep serving), the catalogue state beside the service's own, and the scheduler that
//! checks entries that were never checked or whose schedule is due. [`runner`] carries out a
//! check and an admin's operations.

pub mod relock;
pub mod runner;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_catalog::{CatalogStore, Community, Loaded};

use crate::state::AppState;

/// The current time, in seconds since the epoch: the system clock, or a test's.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    })
}

/// How often the folder is looked at again, at most.
const RESCAN: Duration = Duration::from_secs(1);

/// The communities and the catalogue state.
pub struct Catalogs {
    dir: Option<PathBuf>,
    loaded: Mutex<Scan>,
    pub store: Arc<CatalogStore>,
    /// This process, as the holder of entries' leases.
    pub holder: String,
    pub clock: Clock,
    /// When the service started (a schedule's first time is counted from it).
    pub started: i64,
    /// Profile lists as answered, by community, with what they were made from.
    profiles: Mutex<std::collections::HashMap<String, CachedProfiles>>,
    /// Where communities' images go, by registry prefix.
    pushes: Mutex<std::collections::HashMap<String, kiln_builder::PushSettings>>,
}

/// A community's profile list, kept until the state or the community's files change.
struct CachedProfiles {
    generation: (u64, i64),
    files: Arc<Loaded>,
    body: bytes::Bytes,
}

struct Scan {
    at: Option<Instant>,
    fingerprint: u64,
    loaded: Arc<Loaded>,
}

impl Catalogs {
    /// The communities of `dir` (none without one), with their state in `state_file`.
    pub fn new(
        dir: Option<PathBuf>,
        state_file: &Path,
        clock: Clock,
    ) -> Result<Catalogs, crate::error::StartError> {
        if let Some(dir) = &dir
            && !dir.is_dir()
        {
            return Err(crate::error::ConfigError::Invalid(format!(
                "KILN_COMMUNITIES_DIR={} is not a folder",
                dir.display()
            ))
            .into());
        }
        let store = CatalogStore::open(state_file)
            .map_err(|e| crate::error::ConfigError::Invalid(e.to_string()))?;
        let holder = kiln_builder::random::hex(8)
            .map_err(|e| crate::error::ConfigError::Invalid(e.to_string()))?;
        let started = clock();
        Ok(Catalogs {
            dir,
            loaded: Mutex::new(Scan {
                at: None,
                fingerprint: 0,
                loaded: Arc::new(Loaded::default()),
            }),
            store: Arc::new(store),
            holder,
            clock,
            started,
            profiles: Mutex::new(std::collections::HashMap::new()),
            pushes: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// The push settings made for a registry prefix, if made already.
    pub fn push_for(&self, prefix: &str) -> Option<kiln_builder::PushSettings> {
        self.pushes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(prefix)
            .cloned()
    }

    pub fn keep_push(&self, prefix: &str, push: &kiln_builder::PushSettings) {
        self.pushes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(prefix.to_string(), push.clone());
    }

    /// A community's profile list (KubeSpawner's format, serialised), made again only when the
    /// catalogue state (here or on another replica) or the community files changed.
    pub async fn profiles(&self, id: &str) -> Result<Option<bytes::Bytes>, runner::CatalogError> {
        let files = self.current();
        let Some(community) = files.communities.get(id).cloned() else {
            return Ok(None);
        };
        let generation = self.with_store(|s| s.generation()).await?;
        {
            let cache = self
                .profiles
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(cached) = cache.get(id)
                && cached.generation == generation
                && Arc::ptr_eq(&cached.files, &files)
            {
                return Ok(Some(cached.body.clone()));
            }
        }
        let c = community.id.clone();
        let (versions, pins) = self.with_store(move |s| s.community(&c)).await?;
        let list = kiln_catalog::profiles::profile_list(&community, &versions, &pins);
        let body = bytes::Bytes::from(
            serde_json::to_vec(&list).map_err(|e| runner::CatalogError::Internal(e.to_string()))?,
        );
        self.profiles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(
                id.to_string(),
                CachedProfiles {
                    generation,
                    files,
                    body: body.clone(),
                },
            );
        Ok(Some(body))
    }

    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The communities as their files say now: the folder is read again when a file changed
    /// (looked at no more than once a second).
    pub fn current(&self) -> Arc<Loaded> {
        let Some(dir) = &self.dir else {
            return Arc::new(Loaded::default());
        };
        let mut scan = self
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if scan.at.is_some_and(|at| at.elapsed() < RESCAN) {
            return scan.loaded.clone();
        }
        scan.at = Some(Instant::now());
        let fingerprint = kiln_catalog::load::fingerprint(dir);
        if fingerprint == scan.fingerprint && scan.fingerprint != 0 {
            return scan.loaded.clone();
        }
        match kiln_catalog::load_dir(dir) {
            Ok(loaded) => {
                for error in &loaded.errors {
                    tracing::warn!("community file left out: {error}");
                }
                tracing::info!(
                    communities = loaded.communities.len(),
                    "communities read from {}",
                    dir.display()
                );
                scan.loaded = Arc::new(loaded);
                scan.fingerprint = fingerprint;
            }
            Err(e) => tracing::warn!("cannot read {}: {e}", dir.display()),
        }
        scan.loaded.clone()
    }

    pub fn community(&self, id: &str) -> Option<Community> {
        self.current().communities.get(id).cloned()
    }

    /// Run a blocking store call off the async workers.
    pub async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&CatalogStore) -> Result<T, kiln_catalog::store::StoreError> + Send + 'static,
    ) -> Result<T, runner::CatalogError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| runner::CatalogError::Internal(e.to_string()))?
            .map_err(|e| runner::CatalogError::Internal(e.to_string()))
    }
}

/// Check, every `tick`, each entry that was never checked or whose schedule is due, one at a time
/// (a check holds the entry's lease, so another replica does not check it too); run a
/// community's retention when its `[retention]` schedule is due.
pub async fn schedule(state: Arc<AppState>, tick: Duration, shutdown: impl std::future::Future) {
    tokio::pin!(shutdown);
    loop {
        for task in due(&state).await {
            match task {
                Task::Check(community, entry) => {
                    match runner::check(&state, &community, &entry, false).await {
                        Ok(report) => tracing::info!(
                            community = %community.id,
                            entry = %entry.slug,
                            "scheduled check: {}",
                            report.message
                        ),
                        Err(e) => tracing::warn!(
                            community = %community.id,
                            entry = %entry.slug,
                            "scheduled check failed: {e}"
                        ),
                    }
                }
                Task::Retention(community) => runner::scheduled_retention(&state, &community).await,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = &mut shutdown => return,
        }
    }
}

/// What a tick does.
enum Task {
    Check(Community, Box<kiln_catalog::Entry>),
    Retention(Community),
}

/// The entries a tick checks (those never checked, or due by their schedule), and the
/// communities whose retention is due (by its schedule only: never at start-up).
async fn due(state: &AppState) -> Vec<Task> {
    let catalogs = &state.catalogs;
    let now = catalogs.now();
    let mut due = Vec::new();
    for community in catalogs.current().communities.values() {
        let slugs =
            community
                .entries
                .iter()
                .map(|e| (Some(e), e.slug.as_str(), e.rebuild.schedule.as_ref()))
                .chain(community.retention.schedule.as_ref().map(|schedule| {
                    (None, kiln_catalog::community::RETENTION_KEY, Some(schedule))
                }));
        for (entry, key, schedule) in slugs {
            let (c, k) = (community.id.clone(), key.to_string());
            let last = match catalogs.with_store(move |s| s.last_check(&c, &k)).await {
                Ok(last) => last,
                Err(e) => {
                    tracing::warn!("catalogue state: {e}");
                    continue;
                }
            };
            let on_schedule = |last: Option<i64>| {
                schedule.is_some_and(|schedule| {
                    kiln_catalog::Schedule::parse(schedule)
                        .is_ok_and(|s| s.due(last, catalogs.started, now))
                })
            };
            let is_due = match (&last, entry) {
                (None, Some(_)) => true,
                (last, _) => on_schedule(last.as_ref().map(|l| l.checked)),
            };
            if is_due {
                due.push(match entry {
                    Some(entry) => Task::Check(community.clone(), Box::new(entry.clone())),
                    None => Task::Retention(community.clone()),
                });
            }
        }
    }
    due
}
