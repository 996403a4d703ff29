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

/// The events of one build, shared by its watchers.
pub struct SharedBuild {
    events: Mutex<Vec<Event>>,
    /// The number of events, bumped on every new one; `u64::MAX` marks the end.
    count: watch::Sender<usize>,
    image: Mutex<Option<String>>,
}

impl SharedBuild {
    fn new() -> Self {
        SharedBuild {
            events: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
            image: Mutex::new(None),
        }
    }

    fn push(&self, event: Event) {
        let mut events = self.events.lock().expect("events lock");
        events.push(event);
        let n = events.len();
        drop(events);
        self.count.send_replace(n);
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
    queue: Arc<Semaphore>,
    /// Builds started since the service started.
    pub started: AtomicU64,
}

struct Recorder(Arc<SharedBuild>);

impl EventSink for Recorder {
    fn emit(&mut self, event: Event) {
        self.0.push(event);
    }
}

impl Hub {
    pub fn new(engine: Engine, config: Config) -> Hub {
        Hub {
            queue: Arc::new(Semaphore::new(config.max_builds.max(1))),
            engine,
            config,
            builds: Mutex::new(HashMap::new()),
            started: AtomicU64::new(0),
        }
    }

    /// The build of `spec`: joined when one is in flight, started otherwise.
    pub fn build(self: &Arc<Self>, spec: &Spec) -> Arc<SharedBuild> {
        let key = format!("{}@{}", spec.repo_url, spec.reference);
        let mut builds = self.builds.lock().expect("builds lock");
        if let Some(existing) = builds.get(&key) {
            return existing.clone();
        }
        let shared = Arc::new(SharedBuild::new());
        builds.insert(key.clone(), shared.clone());
        drop(builds);
        self.started.fetch_add(1, Ordering::SeqCst);
        let (hub, spec, shared_task) = (self.clone(), spec.clone(), shared.clone());
        tokio::spawn(async move {
            if hub.queue.available_permits() == 0 {
                shared_task.push(Event::new(Phase::Waiting, "Waiting for a free builder"));
            }
            let permit = hub.queue.clone().acquire_owned().await;
            let push = match &hub.config.image_prefix {
                Some(prefix) => match kiln_registry::Registry::for_reference(
                    &format!("{prefix}probe:latest"),
                    None,
                ) {
                    Ok(registry) => Some(PushSettings {
                        prefix: prefix.clone(),
                        registry: Arc::new(registry),
                        native: true,
                    }),
                    Err(e) => {
                        shared_task.push(Event::new(Phase::Failed, e.to_string()));
                        hub.finish(&key);
                        return;
                    }
                },
                None => None,
            };
            let request = BuildRequest {
                source: Some(spec.source.clone()),
                reference: Some(spec.reference.clone()),
                push,
                ca_bundle: hub.config.ca_bundle.clone(),
                ..BuildRequest::default()
            };
            let mut recorder = Recorder(shared_task.clone());
            let result =
                kiln_builder::build(&hub.engine, Arc::new(LibGit), request, &mut recorder).await;
            if let Ok(built) = result {
                *shared_task.image.lock().expect("image lock") = Some(built.image);
            }
            drop(permit);
            hub.finish(&key);
        });
        shared
    }

    /// A finished build leaves the table: the next request checks the engine or registry again,
    /// which finds the image at once.
    fn finish(&self, key: &str) {
        self.builds.lock().expect("builds lock").remove(key);
    }
}
