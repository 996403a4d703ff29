//! The builds in flight: one build per repository and ref at a time, shared by every request for
//! it, queued beyond the concurrency limit, recorded in the state database. Every watcher gets the
//! log so far, then follows it live.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kiln_builder::{BuildRequest, Event, EventSink, Phase, PushSettings};
use kiln_buildpacks::PlanOptions;
use tokio::sync::{Semaphore, watch};

use crate::engine::ContainerEngine;
use crate::error::StoreError;
use crate::metrics::Metrics;
use crate::spec::Spec;
use crate::store::{NewBuild, Store};

/// How the service builds.
#[derive(Clone, Debug, Default)]
pub struct BuildSettings {
    /// Builds running at once; more wait in a queue.
    pub max_builds: usize,
    pub plan_options: PlanOptions,
    /// Trusted by the steps that download.
    pub ca_bundle: Option<PathBuf>,
    /// Where images are pushed; `None` keeps them in the engine.
    pub push: Option<PushSettings>,
}

/// The events of one build, shared by its watchers.
pub struct SharedBuild {
    /// The build's id in the state database.
    pub id: i64,
    events: Mutex<Vec<Event>>,
    /// The number of events, bumped on every new one.
    count: watch::Sender<usize>,
    image: Mutex<Option<String>>,
}

impl SharedBuild {
    fn new(id: i64) -> Self {
        SharedBuild {
            id,
            events: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
            image: Mutex::new(None),
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
    /// In flight, by repository and ref. An async lock: the row is created while it is held, so
    /// two requests for one repository never start two builds.
    in_flight: tokio::sync::Mutex<HashMap<String, Arc<SharedBuild>>>,
    /// In flight, by id (for the JSON API's event streams).
    by_id: Mutex<HashMap<i64, Arc<SharedBuild>>>,
    queue: Arc<Semaphore>,
    /// Builds started since the service started.
    started: AtomicU64,
    metrics: Arc<Metrics>,
}

/// Records a build's events in the state database, then hands them to the watchers: a watcher
/// that sees `built` finds the build built.
struct Recorder {
    shared: Arc<SharedBuild>,
    store: Arc<Store>,
    seq: usize,
}

impl EventSink for Recorder {
    fn emit(&mut self, event: Event) {
        let json = serde_json::to_value(&event).unwrap_or_default();
        let (id, seq) = (self.shared.id, self.seq);
        self.seq += 1;
        let shared = self.shared.clone();
        match event.phase {
            Phase::Built | Phase::Failed => {
                self.store.append(id, seq, &json, || {});
                let (image, reason) = match event.phase {
                    Phase::Built => (event.image_name.clone(), None),
                    _ => (None, Some(event.message.trim_end().to_string())),
                };
                self.store
                    .finish(id, image.as_deref(), reason.as_deref(), move || {
                        shared.push(event)
                    });
            }
            _ => self
                .store
                .append(id, seq, &json, move || shared.push(event)),
        }
    }
}

impl Builds {
    pub fn new(
        engine: Arc<dyn ContainerEngine>,
        store: Arc<Store>,
        settings: BuildSettings,
        metrics: Arc<Metrics>,
    ) -> Builds {
        Builds {
            queue: Arc::new(Semaphore::new(settings.max_builds.max(1))),
            engine,
            store,
            settings,
            in_flight: tokio::sync::Mutex::new(HashMap::new()),
            by_id: Mutex::new(HashMap::new()),
            started: AtomicU64::new(0),
            metrics,
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn push(&self) -> Option<&PushSettings> {
        self.settings.push.as_ref()
    }

    /// Builds started since the service started.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// The build of `spec`: joined when one is in flight, started otherwise.
    pub async fn build(self: &Arc<Self>, spec: &Spec) -> Result<Arc<SharedBuild>, StoreError> {
        let key = format!("{}@{}", spec.repo_url, spec.reference);
        let mut in_flight = self.in_flight.lock().await;
        if let Some(existing) = in_flight.get(&key) {
            return Ok(existing.clone());
        }
        let id = self
            .store
            .create(NewBuild {
                provider: &spec.provider,
                spec: &spec.raw,
                repo_url: &spec.repo_url,
                reference: &spec.reference,
            })
            .await?;
        let shared = Arc::new(SharedBuild::new(id));
        in_flight.insert(key.clone(), shared.clone());
        drop(in_flight);
        lock(&self.by_id).insert(id, shared.clone());
        self.started.fetch_add(1, Ordering::SeqCst);
        let (builds, spec, task_shared) = (self.clone(), spec.clone(), shared.clone());
        tokio::spawn(async move { builds.run(key, spec, task_shared).await });
        Ok(shared)
    }

    async fn run(self: Arc<Self>, key: String, spec: Spec, shared: Arc<SharedBuild>) {
        let started_at = Instant::now();
        self.metrics
            .builds_in_progress
            .fetch_add(1, Ordering::SeqCst);
        let mut recorder = Recorder {
            shared: shared.clone(),
            store: self.store.clone(),
            seq: 0,
        };
        if self.queue.available_permits() == 0 {
            recorder.emit(Event::new(Phase::Waiting, "Waiting for a free builder"));
        }
        let permit = self.queue.clone().acquire_owned().await;
        let request = BuildRequest {
            source: Some(spec.source.clone()),
            reference: Some(spec.reference.clone()),
            push: self.settings.push.clone(),
            ca_bundle: self.settings.ca_bundle.clone(),
            plan_options: self.settings.plan_options.clone(),
            ..BuildRequest::default()
        };
        let result = self.engine.build(request, &mut recorder).await;
        let (image, reason) = match result {
            Ok(built) => (Some(built.image), None),
            Err(e) => (None, Some(e.to_string())),
        };
        *lock(&shared.image) = image.clone();
        drop(permit);
        self.finished(&key, shared.id, image, reason, started_at)
            .await;
    }

    /// A build in flight, by id.
    pub fn live(&self, id: i64) -> Option<Arc<SharedBuild>> {
        lock(&self.by_id).get(&id).cloned()
    }

    /// A finished build leaves the table: the next request checks the engine or registry again,
    /// which finds the image at once.
    async fn finished(
        &self,
        key: &str,
        id: i64,
        image: Option<String>,
        reason: Option<String>,
        started_at: Instant,
    ) {
        let ok = image.is_some();
        // The recorder stored the outcome with the last event; this covers a build that ended
        // without one (the store keeps the first outcome).
        if let Err(e) = self
            .store
            .finish_now(id, image.as_deref(), reason.as_deref())
            .await
        {
            tracing::error!(build = id, "cannot store the outcome of a build: {e}");
        }
        self.in_flight.lock().await.remove(key);
        lock(&self.by_id).remove(&id);
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
