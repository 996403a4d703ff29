//! The local launcher: sessions run as containers on the service's own engine, on free loopback
//! ports, each with its own token; idle ones are stopped.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_builder::Engine;
use kiln_builder::run::{RunRequest, Session, wait_until_ready};

/// A local session the service started.
struct Running {
    session: Arc<Session>,
    request: RunRequest,
    idle_since: Option<Instant>,
}

/// The sessions on the service's engine.
#[derive(Default)]
pub struct Local {
    running: Mutex<Vec<Running>>,
}

impl Local {
    /// Images of the sessions running.
    pub fn images(&self) -> Vec<String> {
        (self.running.lock().expect("sessions lock").iter())
            .map(|r| r.request.image.clone())
            .collect()
    }

    /// Start JupyterLab from `image` and wait until it answers; returns its URL and token.
    pub async fn launch(
        &self,
        engine: &Engine,
        image: &str,
        timeout: Duration,
    ) -> Result<(String, String), String> {
        let request = RunRequest::jupyter(image).map_err(|e| e.to_string())?;
        let session = Session::start(engine, &request)
            .await
            .map_err(|e| e.to_string())?;
        if !wait_until_ready(&request, timeout).await {
            session.remove().await;
            return Err(format!(
                "the session did not answer within {} s",
                timeout.as_secs()
            ));
        }
        let answer = (request.url(), request.token.clone());
        self.running.lock().expect("sessions lock").push(Running {
            session: Arc::new(session),
            request,
            idle_since: None,
        });
        Ok(answer)
    }

    /// Remove every session (on shutdown).
    pub async fn stop_all(&self) {
        let running: Vec<Running> =
            std::mem::take(&mut *self.running.lock().expect("sessions lock"));
        for r in running {
            r.session.remove().await;
        }
    }

    /// Stop sessions that have had no connection and no kernel for `idle`.
    pub async fn cull_idle(self: Arc<Self>, idle: Duration) {
        let idle = idle.max(Duration::from_secs(1));
        let every = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            tokio::time::sleep(every).await;
            let snapshot: Vec<(usize, u16, String)> = {
                let running = self.running.lock().expect("sessions lock");
                running
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (i, r.request.port, r.request.token.clone()))
                    .collect()
            };
            let mut busy = Vec::new();
            for (i, port, token) in snapshot {
                busy.push((i, session_busy(port, &token).await));
            }
            let mut stop = Vec::new();
            {
                let mut running = self.running.lock().expect("sessions lock");
                let now = Instant::now();
                for (i, is_busy) in busy {
                    if let Some(r) = running.get_mut(i) {
                        match (is_busy, r.idle_since) {
                            (true, _) => r.idle_since = None,
                            (false, None) => r.idle_since = Some(now),
                            (false, Some(since)) if now.duration_since(since) >= idle => {
                                stop.push(r.session.clone())
                            }
                            _ => {}
                        }
                    }
                }
            }
            // Sessions leave the list only once removed, so a shutdown meanwhile still removes them.
            for session in &stop {
                tracing::info!(id = %session.id, "stopping an idle session");
                session.remove().await;
            }
            self.running
                .lock()
                .expect("sessions lock")
                .retain(|r| !stop.iter().any(|s| Arc::ptr_eq(s, &r.session)));
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
