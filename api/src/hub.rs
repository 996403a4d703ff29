//! Builds shared between requests: one build per repository and ref at a time. Every watcher gets
//! the log so far, then follows it live.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kiln_builder::git::LibGit;
use kiln_builder::{BuildRequest, Engine, Event, EventSink, Phase, PushSettings};
use tokio::sync::{Semaphore, watch};

use crate::config::Config;
use crate::spec::Spec;
use crate::store::Store;

/// The events of one build, shared by its watchers.
pub struct SharedBuild {
    /// The build's id in the state database.
    pub id: i64,
    events: Mutex<Vec<Event>>,
    /// The number of events, bumped on every new one; `u64::MAX` marks the end.
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

    /// Record an event; returns its index.
    fn push(&self, event: Event) -> usize {
        let mut events = self.events.lock().expect("events lock");
        events.push(event);
        let n = events.len();
        drop(events);
        self.count.send_replace(n);
        n - 1
    }

    /// Events from index `from` on (waiting for new ones); `None` when the build has ended and
    /// every event was read.
    pub async fn next(&self, from: usize) -> Option<Vec<Event>> {
        let mut rx = self.count.subscribe();
        loop {
            {
                let events = self.events.lock().expect("events lock");
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

    pub fn image(&self) -> Option<String> {
        self.image.lock().expect("image lock").clone()
    }
}

/// All builds in flight.
pub struct Hub {
    pub engine: Engine,
    pub config: Config,
    builds: Mutex<HashMap<String, Arc<SharedBuild>>>,
    /// Builds in flight by id (for the JSON API's event streams).
    by_id: Mutex<HashMap<i64, Arc<SharedBuild>>>,
    pub store: Arc<Store>,
    /// Where images are pushed (`KILN_IMAGE_PREFIX`), made once.
    pub push: Option<PushSettings>,
    queue: Arc<Semaphore>,
    /// Builds started since the service started.
    pub started: AtomicU64,
    pub metrics: Metrics,
}

/// Counters for `/metrics` (Prometheus text format).
#[derive(Default)]
pub struct Metrics {
    pub builds_succeeded: AtomicU64,
    pub builds_failed: AtomicU64,
    pub builds_in_progress: std::sync::atomic::AtomicI64,
    /// Sum of build durations in milliseconds, and their count (for `_sum` and `_count`).
    pub build_ms_sum: AtomicU64,
    pub launches_succeeded: AtomicU64,
    pub launches_failed: AtomicU64,
    pub launch_ms_sum: AtomicU64,
}

impl Metrics {
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::SeqCst);
        let (ok, failed) = (g(&self.builds_succeeded), g(&self.builds_failed));
        let (lok, lfailed) = (g(&self.launches_succeeded), g(&self.launches_failed));
        format!(
            "# HELP kiln_builds_total Builds finished, by status.\n# TYPE kiln_builds_total counter\n\
             kiln_builds_total{{status=\"success\"}} {ok}\nkiln_builds_total{{status=\"failure\"}} {failed}\n\
             # HELP kiln_builds_in_progress Builds running or queued.\n# TYPE kiln_builds_in_progress gauge\n\
             kiln_builds_in_progress {}\n\
             # HELP kiln_build_duration_seconds Time from the start of a build to its end.\n# TYPE kiln_build_duration_seconds summary\n\
             kiln_build_duration_seconds_sum {:.3}\nkiln_build_duration_seconds_count {}\n\
             # HELP kiln_launches_total Launches finished, by status.\n# TYPE kiln_launches_total counter\n\
             kiln_launches_total{{status=\"success\"}} {lok}\nkiln_launches_total{{status=\"failure\"}} {lfailed}\n\
             # HELP kiln_launch_duration_seconds Time from a launch request to a ready session.\n# TYPE kiln_launch_duration_seconds summary\n\
             kiln_launch_duration_seconds_sum {:.3}\nkiln_launch_duration_seconds_count {}\n",
            self.builds_in_progress.load(Ordering::SeqCst),
            g(&self.build_ms_sum) as f64 / 1000.0,
            ok + failed,
            g(&self.launch_ms_sum) as f64 / 1000.0,
            lok + lfailed,
        )
    }
}

/// Records a build's events in memory (for watchers) and in the state database.
struct Recorder {
    shared: Arc<SharedBuild>,
    store: Arc<Store>,
}

impl EventSink for Recorder {
    /// The database first, then the watchers: a watcher that sees `built` finds the build built.
    fn emit(&mut self, event: Event) {
        let json = serde_json::to_value(&event).unwrap_or_default();
        let seq = self.shared.events.lock().expect("events lock").len();
        self.store.append(self.shared.id, seq, &json);
        match event.phase {
            Phase::Built => self
                .store
                .finish(self.shared.id, event.image_name.as_deref(), None),
            Phase::Failed => {
                self.store
                    .finish(self.shared.id, None, Some(event.message.trim_end()))
            }
            _ => {}
        }
        self.shared.push(event);
    }
}

impl Hub {
    /// The hub of a service; an invalid `KILN_IMAGE_PREFIX` is an error here, at start-up.
    pub fn new(engine: Engine, config: Config, store: Store) -> Result<Hub, String> {
        let push = match &config.image_prefix {
            Some(prefix) => Some(
                PushSettings::new(prefix, None, true)
                    .map_err(|e| format!("KILN_IMAGE_PREFIX: {e}"))?,
            ),
            None => None,
        };
        Ok(Hub {
            push,
            by_id: Mutex::new(HashMap::new()),
            store: Arc::new(store),
            queue: Arc::new(Semaphore::new(config.max_builds.max(1))),
            engine,
            config,
            builds: Mutex::new(HashMap::new()),
            started: AtomicU64::new(0),
            metrics: Metrics::default(),
        })
    }

    /// The build of `spec`: joined when one is in flight, started otherwise.
    pub fn build(self: &Arc<Self>, spec: &Spec) -> Arc<SharedBuild> {
        let key = format!("{}@{}", spec.repo_url, spec.reference);
        let mut builds = self.builds.lock().expect("builds lock");
        if let Some(existing) = builds.get(&key) {
            return existing.clone();
        }
        let id = self
            .store
            .create(&spec.provider, &spec.raw, &spec.repo_url, &spec.reference);
        let shared = Arc::new(SharedBuild::new(id));
        builds.insert(key.clone(), shared.clone());
        drop(builds);
        self.by_id
            .lock()
            .expect("builds lock")
            .insert(id, shared.clone());
        self.started.fetch_add(1, Ordering::SeqCst);
        let (hub, spec, shared_task) = (self.clone(), spec.clone(), shared.clone());
        tokio::spawn(async move {
            let started_at = std::time::Instant::now();
            hub.metrics
                .builds_in_progress
                .fetch_add(1, Ordering::SeqCst);
            let mut recorder = Recorder {
                shared: shared_task.clone(),
                store: hub.store.clone(),
            };
            if hub.queue.available_permits() == 0 {
                recorder.emit(Event::new(Phase::Waiting, "Waiting for a free builder"));
            }
            let permit = hub.queue.clone().acquire_owned().await;
            let request = BuildRequest {
                source: Some(spec.source.clone()),
                reference: Some(spec.reference.clone()),
                push: hub.push.clone(),
                ca_bundle: hub.config.ca_bundle.clone(),
                plan_options: kiln_buildpacks::PlanOptions::default()
                    .with_jupyterhub(&hub.config.jupyterhub_version),
                ..BuildRequest::default()
            };
            let result =
                kiln_builder::build(&hub.engine, Arc::new(LibGit), request, &mut recorder).await;
            let (image, reason) = match result {
                Ok(built) => (Some(built.image), None),
                Err(e) => (None, Some(e.to_string())),
            };
            *shared_task.image.lock().expect("image lock") = image.clone();
            drop(permit);
            hub.finished(&key, id, image, reason, started_at);
        });
        shared
    }

    /// A build in flight, by id.
    pub fn live(&self, id: i64) -> Option<Arc<SharedBuild>> {
        self.by_id.lock().expect("builds lock").get(&id).cloned()
    }

    /// A finished build leaves the table: the next request checks the engine or registry again,
    /// which finds the image at once.
    fn finished(
        &self,
        key: &str,
        id: i64,
        image: Option<String>,
        reason: Option<String>,
        started_at: std::time::Instant,
    ) {
        let ok = image.is_some();
        // The recorder stored the outcome with the last event; this covers a build that ended
        // without one.
        if self.store.get(id).is_some_and(|r| r.status == "running") {
            self.store.finish(id, image.as_deref(), reason.as_deref());
        }
        self.builds.lock().expect("builds lock").remove(key);
        self.by_id.lock().expect("builds lock").remove(&id);
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
