//! The local launcher: sessions run as containers on the service's own engine, on free loopback
//! ports, each with its own token; idle ones are stopped.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kiln_builder::engine::Resources;
use kiln_builder::run::{RunRequest, wait_until_ready};

use crate::engine::ContainerEngine;
use crate::error::LaunchError;

/// A local session the service started.
struct Running {
    id: String,
    request: RunRequest,
    started: Instant,
    idle_since: Option<Instant>,
}

/// The sessions on the service's engine.
pub struct Local {
    engine: Arc<dyn ContainerEngine>,
    /// What every session runs with: memory, CPUs, processes, no capabilities.
    resources: Resources,
    /// How long a session may run at all.
    max_age: Duration,
    running: Mutex<Vec<Running>>,
}

impl Local {
    pub fn new(engine: Arc<dyn ContainerEngine>, resources: Resources, max_age: Duration) -> Local {
        Local {
            engine,
            resources,
            max_age,
            running: Mutex::new(Vec::new()),
        }
    }

    fn running(&self) -> MutexGuard<'_, Vec<Running>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Images of the sessions running.
    pub fn images(&self) -> Vec<String> {
        self.running()
            .iter()
            .map(|r| r.request.image.clone())
            .collect()
    }

    /// Start JupyterLab from `image` and wait until it answers; returns its URL and token.
    pub async fn launch(
        &self,
        image: &str,
        timeout: Duration,
    ) -> Result<(String, String), LaunchError> {
        let mut request = RunRequest::jupyter(image)?;
        request.resources = self.resources.clone();
        let id = self.engine.start_session(&request).await?;
        if !wait_until_ready(&request, timeout).await {
            self.engine.remove_session(&id).await;
            return Err(LaunchError::NotReady {
                seconds: timeout.as_secs(),
            });
        }
        let answer = (request.url(), request.token.clone());
        self.running().push(Running {
            id,
            request,
            started: Instant::now(),
            idle_since: None,
        });
        Ok(answer)
    }

    /// Remove every session (on shutdown).
    pub async fn stop_all(&self) {
        let running: Vec<Running> = std::mem::take(&mut *self.running());
        for r in running {
            self.engine.remove_session(&r.id).await;
        }
    }

    /// Stop sessions that have had no connection and no kernel for `idle`, and sessions older than
    /// the maximum age, busy or not.
    pub async fn cull_idle(self: Arc<Self>, idle: Duration) {
        let idle = idle.max(Duration::from_secs(1));
        let every = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            tokio::time::sleep(every).await;
            let snapshot: Vec<(String, u16, String)> = self
                .running()
                .iter()
                .map(|r| (r.id.clone(), r.request.port, r.request.token.clone()))
                .collect();
            let mut busy = Vec::new();
            for (id, port, token) in snapshot {
                busy.push((id, session_busy(port, &token).await));
            }
            let mut stop = Vec::new();
            {
                let mut running = self.running();
                let now = Instant::now();
                for (id, is_busy) in busy {
                    if let Some(r) = running.iter_mut().find(|r| r.id == id) {
                        if now.duration_since(r.started) >= self.max_age {
                            stop.push(id);
                            continue;
                        }
                        match (is_busy, r.idle_since) {
                            (true, _) => r.idle_since = None,
                            (false, None) => r.idle_since = Some(now),
                            (false, Some(since)) if now.duration_since(since) >= idle => {
                                stop.push(id)
                            }
                            _ => {}
                        }
                    }
                }
            }
            // Sessions leave the list only once removed, so a shutdown meanwhile still removes them.
            for id in &stop {
                tracing::info!(%id, "stopping an idle or aged-out session");
                self.engine.remove_session(id).await;
            }
            self.running().retain(|r| !stop.contains(&r.id));
        }
    }
}

/// Whether a session has connections or kernels (an unreachable session counts as idle).
async fn session_busy(port: u16, token: &str) -> bool {
    let Some(status) = kiln_builder::run::status(port, token).await else {
        return false;
    };
    status["connections"].as_u64().unwrap_or(0) > 0 || status["kernels"].as_u64().unwrap_or(0) > 0
}
