//! The builds in flight: one build per repository and ref at a time, shared by every request for
//! it (a request with credentials shares only with requests with the same credentials), queued
//! beyond the concurrency limit, bounded in number, time and log, recorded in the state database.
//! Every watcher gets the log so far, then follows it live.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_builder::git::FetchSettings;
use kiln_builder::{BuildRequest, Event, EventSink, Phase, PushSettings, Source};
use kiln_buildpacks::PlanOptions;
use sha2::Digest;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::admission::ClientKey;
use crate::engine::ContainerEngine;
use crate::error::StoreError;
use crate::metrics::Metrics;
use crate::spec::Spec;
use crate::store::{NewBuild, Store};

/// How the service builds.
#[derive(Clone, Debug, Default)]
pub struct BuildSettings {
    /// Builds running at once.
    pub max_builds: usize,
    /// Builds waiting for a builder; more are refused.
    pub max_queued: usize,
    /// Builds one client's requests started that are running or waiting.
    pub max_per_client: usize,
    /// How long a build may run.
    pub max_age: Duration,
    /// Events kept per build.
    pub max_log_lines: usize,
    pub plan_options: PlanOptions,
    /// Package servers builds use instead of the public ones.
    pub mirrors: kiln_buildpacks::options::PackageMirrors,
    /// Trusted by the steps that download.
    pub ca_bundle: Option<std::path::PathBuf>,
    /// Where images are pushed; `None` keeps them in the engine.
    pub push: Option<PushSettings>,
    /// What fetches may reach and bring, and the operator's credentials with their hosts.
    pub fetch: FetchSettings,
    /// Memory and CPUs of each build's steps.
    pub resources: kiln_builder::engine::Resources,
}

/// Where a build's image goes when not where the service's requests go: under a community's
/// registry prefix (BinderHub's names there), or named by its catalogue (each version's own tag).
#[derive(Clone, Debug)]
pub struct Target {
    pub image_name: Option<String>,
    /// `None`: the image stays in the engine.
    pub push: Option<PushSettings>,
    /// Resolve the repository's dependencies again ([`kiln_buildpacks::PlanOptions::refresh`]).
    pub refresh: Option<String>,
}

impl Target {
    /// What tells builds to different targets apart.
    fn key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.image_name.as_deref().unwrap_or_default(),
            self.push.as_ref().map_or("", |p| p.prefix.as_str()),
            self.refresh.as_deref().unwrap_or_default()
        )
    }
}

/// Why a build was not started.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the build queue is full ({0} builds are waiting for a builder); try again in a few minutes"
    )]
    QueueFull(usize),
    #[error(
        "{client} has {count} builds running or waiting already; wait for one to finish and try again"
    )]
    TooManyForClient { client: ClientKey, count: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refusal {
    /// 429 for a full queue or a client at its limit, 500 when the state database failed.
    pub fn status_code(&self) -> u16 {
        match self {
            Refusal::QueueFull(_) | Refusal::TooManyForClient { .. } => 429,
            Refusal::Store(_) => 500,
        }
    }
}

/// Longest line kept in a log (longer ones are cut, with a mark).
pub const MAX_LINE: usize = 4096;

/// The events of one build, shared by its watchers.
pub struct SharedBuild {
    /// The build's id in the API: random, so that holding it is what lets one read the build.
    pub id: String,
    /// Its row in the state database.
    pub row: i64,
    events: Mutex<Vec<Event>>,
    /// The number of events, bumped on every new one.
    count: watch::Sender<usize>,
    image: Mutex<Option<String>>,
    cancel: CancellationToken,
    /// The client whose request started it (counted against their builds).
    client: ClientKey,
}

impl SharedBuild {
    fn new(id: String, row: i64, client: ClientKey) -> Self {
        SharedBuild {
            id,
            row,
            events: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
            image: Mutex::new(None),
            cancel: CancellationToken::new(),
            client,
        }
    }

    /// Record an event for the watchers.
    fn push(&self, event: Event) {
        let n = {
            let mut events = lock(&self.events);
            events.push(event);
            events.len()
        };
        self.count.send_replace(n);
    }

    /// Events from index `from` on (waiting for new ones); `None` when the build has ended and
    /// every event was read.
    pub async fn next(&self, from: usize) -> Option<Vec<Event>> {
        let mut rx = self.count.subscribe();
        loop {
            {
                let events = lock(&self.events);
                if events.len() > from {
                    return Some(events[from..].to_vec());
                }
                if events
                    .last()
                    .is_some_and(|e| matches!(e.phase, Phase::Built | Phase::Failed))
                {
                    return None;
                }
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    }

    /// The image, once built.
    pub fn image(&self) -> Option<String> {
        lock(&self.image).clone()
    }
}

/// A poisoned lock means a panic elsewhere while it was held; the data (a list of events, a name)
/// is still whole, so it is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every build in flight.
pub struct Builds {
    engine: Arc<dyn ContainerEngine>,
    store: Arc<Store>,
    settings: BuildSettings,
    /// In flight, by repository, ref and credentials. An async lock: the row is created while it is
    /// held, so two requests for one repository never start two builds.
    in_flight: tokio::sync::Mutex<HashMap<String, Arc<SharedBuild>>>,
    /// In flight, by id (for the JSON API's event streams).
    by_id: Mutex<HashMap<String, Arc<SharedBuild>>>,
    queue: Arc<Semaphore>,
    /// Builds started since the service started.
    started: AtomicU64,
    metrics: Arc<Metrics>,
    /// Mixed into the fingerprint of credentials, so the fingerprint tells nothing about them.
    salt: String,
}

/// Records a build's events in the state database, then hands them to the watchers: a watcher
/// that sees `built` finds the build built. At most `max_lines` events are kept (the last, `built`
/// or `failed`, always is); each line is cut at [`MAX_LINE`].
struct Recorder {
    shared: Arc<SharedBuild>,
    store: Arc<Store>,
    seq: usize,
    max_lines: usize,
    dropped: u64,
}

impl Recorder {
    fn record(&mut self, event: Event) {
        let json = serde_json::to_value(&event).unwrap_or_default();
        let (row, seq) = (self.shared.row, self.seq);
        self.seq += 1;
        let shared = self.shared.clone();
        match event.phase {
            Phase::Built | Phase::Failed => {
                self.store.append(row, seq, &json, || {});
                let (image, reason) = match event.phase {
                    Phase::Built => (event.image_name.clone(), None),
                    _ => (None, Some(event.message.trim_end().to_string())),
                };
                self.store
                    .finish(row, image.as_deref(), reason.as_deref(), move || {
                        shared.push(event)
                    });
            }
            _ => self
                .store
                .append(row, seq, &json, move || shared.push(event)),
        }
    }
}

impl EventSink for Recorder {
    fn emit(&mut self, mut event: Event) {
        let last = matches!(event.phase, Phase::Built | Phase::Failed);
        if !last && self.seq >= self.max_lines {
            if self.dropped == 0 {
                self.record(Event::new(
                    event.phase,
                    format!(
                        "… the log is longer than {} lines; later lines are not kept (KILN_MAX_LOG_LINES)",
                        self.max_lines
                    ),
                ));
            }
            self.dropped += 1;
            return;
        }
        if event.message.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !event.message.is_char_boundary(end) {
                end -= 1;
            }
            event.message.truncate(end);
            event.message.push_str("… (cut)\n");
        }
        self.record(event);
    }
}

impl Builds {
    pub fn new(
        engine: Arc<dyn ContainerEngine>,
        store: Arc<Store>,
        settings: BuildSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Builds, kiln_builder::BuildError> {
        Ok(Builds {
            queue: Arc::new(Semaphore::new(settings.max_builds.max(1))),
            engine,
            store,
            settings,
            in_flight: tokio::sync::Mutex::new(HashMap::new()),
            by_id: Mutex::new(HashMap::new()),
            started: AtomicU64::new(0),
            metrics,
            salt: kiln_builder::random::hex(16)?,
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// What the builds' fetches may reach.
    pub fn policy(&self) -> &kiln_net::Policy {
        &self.settings.fetch.policy
    }

    /// What the builds' fetches may reach and bring.
    pub fn fetch(&self) -> &FetchSettings {
        &self.settings.fetch
    }

    /// The base image builds start from.
    pub fn base_image(&self) -> &str {
        &self.settings.plan_options.base_image
    }

    pub fn push(&self) -> Option<&PushSettings> {
        self.settings.push.as_ref()
    }

    /// Builds started since the service started.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// The key builds are shared by: the repository, the ref, a fingerprint of the credentials
    /// the request carried (empty without any), the owner of a private build, and the image name
    /// of a build with its own [`Target`].
    fn key(&self, spec: &Spec, target: Option<&Target>) -> String {
        let fingerprint = match &spec.source {
            Source::Git(git) => git.credentials.as_ref().map(|c| {
                let mut hash = sha2::Sha256::new();
                for part in [self.salt.as_str(), &c.username, &c.secret] {
                    hash.update(part.as_bytes());
                    hash.update([0]);
                }
                hex::encode(hash.finalize())
            }),
            Source::Local(_) | Source::Record(_) => None,
        };
        format!(
            "{}@{}#{}#{}#{}",
            spec.repo_url,
            spec.reference,
            fingerprint.unwrap_or_default(),
            spec.owner.as_deref().unwrap_or_default(),
            target.map(Target::key).unwrap_or_default()
        )
    }

    /// The build of `spec`: joined when one is in flight for the same repository, ref and
    /// credentials, started otherwise (unless the queue or the client's builds are full:
    /// `max_per_client`, else the service's setting).
    pub async fn build(
        self: &Arc<Self>,
        spec: &Spec,
        client: ClientKey,
        max_per_client: Option<usize>,
    ) -> Result<Arc<SharedBuild>, Refusal> {
        self.build_to(spec, client, max_per_client, None).await
    }

    /// [`Builds::build`], with the image named and pushed as `target` says.
    pub async fn build_to(
        self: &Arc<Self>,
        spec: &Spec,
        client: ClientKey,
        max_per_client: Option<usize>,
        target: Option<Target>,
    ) -> Result<Arc<SharedBuild>, Refusal> {
        let key = self.key(spec, target.as_ref());
        let mut in_flight = self.in_flight.lock().await;
        if let Some(existing) = in_flight.get(&key) {
            return Ok(existing.clone());
        }
        let running = self.settings.max_builds.max(1);
        let waiting = in_flight.len().saturating_sub(running);
        if waiting >= self.settings.max_queued && in_flight.len() >= running {
            return Err(Refusal::QueueFull(waiting));
        }
        let mine = in_flight.values().filter(|b| b.client == client).count();
        let max = max_per_client.unwrap_or(self.settings.max_per_client);
        if max > 0 && mine >= max {
            return Err(Refusal::TooManyForClient {
                client,
                count: mine,
            });
        }
        let id =
            kiln_builder::random::hex(16).map_err(|e| StoreError::NotCommitted(e.to_string()))?;
        let row = self
            .store
            .create(NewBuild {
                id: &id,
                provider: &spec.provider,
                spec: &spec.raw,
                repo_url: &spec.repo_url,
                reference: &spec.reference,
                private: spec.private(),
                owner: spec.owner.as_deref(),
            })
            .await?;
        let shared = Arc::new(SharedBuild::new(id.clone(), row, client));
        in_flight.insert(key.clone(), shared.clone());
        drop(in_flight);
        lock(&self.by_id).insert(id, shared.clone());
        self.started.fetch_add(1, Ordering::SeqCst);
        let (builds, spec, task_shared) = (self.clone(), spec.clone(), shared.clone());
        tokio::spawn(async move { builds.run(key, spec, target, task_shared).await });
        Ok(shared)
    }

    async fn run(
        self: Arc<Self>,
        key: String,
        spec: Spec,
        target: Option<Target>,
        shared: Arc<SharedBuild>,
    ) {
        let started_at = Instant::now();
        self.metrics
            .builds_in_progress
            .fetch_add(1, Ordering::SeqCst);
        let mut recorder = Recorder {
            shared: shared.clone(),
            store: self.store.clone(),
            seq: 0,
            max_lines: self.settings.max_log_lines.max(10),
            dropped: 0,
        };
        if self.queue.available_permits() == 0 {
            recorder.emit(Event::new(Phase::Waiting, "Waiting for a free builder"));
        }
        let permit = tokio::select! {
            permit = self.queue.clone().acquire_owned() => permit.ok(),
            _ = shared.cancel.cancelled() => None,
        };
        let request = self.request_for(&spec, target);
        let max_age = self.settings.max_age.max(Duration::from_secs(1));
        // The build's future owns its connection to the engine: dropping it (on the deadline, or
        // when the operator cancels) ends the engine's build.
        let outcome = match permit {
            None => {
                let message = "the build was cancelled before it started".to_string();
                recorder.emit(Event::failed(500, message.clone()));
                Err(message)
            }
            Some(_) => tokio::select! {
                result = self.engine.build(request, &mut recorder) => result.map_err(|e| e.to_string()).map(|b| b.image),
                _ = tokio::time::sleep(max_age) => {
                    let message = format!(
                        "the build ran longer than the limit of {} s and was stopped (KILN_BUILD_MAX_AGE)",
                        max_age.as_secs()
                    );
                    recorder.emit(Event::failed(500, message.clone()));
                    Err(message)
                }
                _ = shared.cancel.cancelled() => {
                    let message = "the build was cancelled by the operator".to_string();
                    recorder.emit(Event::failed(500, message.clone()));
                    Err(message)
                }
            },
        };
        let (image, reason) = match outcome {
            Ok(image) => (Some(image), None),
            Err(reason) => (None, Some(reason)),
        };
        if recorder.dropped > 0 {
            tracing::info!(build = %shared.id, dropped = recorder.dropped, "log lines not kept");
        }
        *lock(&shared.image) = image.clone();
        self.finished(&key, &shared, image, reason, started_at)
            .await;
    }

    /// The builder's request for a spec, with the service's settings; pushed where `target`
    /// says (else where the service pushes).
    pub fn request_for(&self, spec: &Spec, target: Option<Target>) -> BuildRequest {
        let (image_name, push, refresh) = match target {
            Some(target) => (target.image_name, target.push, target.refresh),
            None => (None, self.settings.push.clone(), None),
        };
        let mut plan_options = self.settings.plan_options.clone();
        plan_options.refresh = refresh;
        BuildRequest {
            source: Some(spec.source.clone()),
            reference: Some(spec.reference.clone()),
            default_branch_fallback: true,
            image_name,
            push,
            ca_bundle: self.settings.ca_bundle.clone(),
            plan_options,
            mirrors: self.settings.mirrors.clone(),
            image_slug: spec.image_slug.clone(),
            fetch: self.settings.fetch.clone(),
            resources: self.settings.resources.clone(),
            ..BuildRequest::default()
        }
    }

    /// A build in flight, by id.
    pub fn live(&self, id: &str) -> Option<Arc<SharedBuild>> {
        lock(&self.by_id).get(id).cloned()
    }

    /// Stop a build in flight; `false` when no build has that id.
    pub fn cancel(&self, id: &str) -> bool {
        match self.live(id) {
            Some(build) => {
                build.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// A finished build leaves the table: the next request checks the engine or registry again,
    /// which finds the image at once.
    async fn finished(
        &self,
        key: &str,
        shared: &SharedBuild,
        image: Option<String>,
        reason: Option<String>,
        started_at: Instant,
    ) {
        let ok = image.is_some();
        // The recorder stored the outcome with the last event; this covers a build that ended
        // without one (the store keeps the first outcome).
        if let Err(e) = self
            .store
            .finish_now(shared.row, image.as_deref(), reason.as_deref())
            .await
        {
            tracing::error!(build = %shared.id, "cannot store the outcome of a build: {e}");
        }
        self.in_flight.lock().await.remove(key);
        lock(&self.by_id).remove(&shared.id);
        let m = &self.metrics;
        m.builds_in_progress.fetch_sub(1, Ordering::SeqCst);
        m.build_ms_sum
            .fetch_add(started_at.elapsed().as_millis() as u64, Ordering::SeqCst);
        if ok {
            &m.builds_succeeded
        } else {
            &m.builds_failed
        }
        .fetch_add(1, Ordering::SeqCst);
    }
}
