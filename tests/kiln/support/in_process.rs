//! The service in the test's own process, on a scripted engine: its HTTP behaviour (framing,
//! admission, shared builds, the JSON API, launches) tested without Docker. The engine is the only
//! stand-in: the router, the admission, the coordinator, the store (SQLite) and the launchers are
//! the service's own, and a "session" is a small HTTP server answering Jupyter's `/api/status`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kiln_api::{AppState, Config, ContainerEngine};
use kiln_builder::run::RunRequest;
use kiln_builder::{BuildError, BuildRequest, Built, Event, EventSink, Outcome, Phase};

use super::free_port;
use super::service::Http;

/// An engine whose builds emit a fixed script of events.
pub struct ScriptedEngine {
    /// The image every build ends with, or the failure it ends with.
    pub result: Result<String, String>,
    /// `building` lines each build emits first.
    pub lines: Vec<String>,
    /// How long each build takes (after its lines).
    pub duration: Duration,
    /// Builds run so far.
    pub builds: AtomicUsize,
    /// Sessions started and not removed.
    pub sessions: std::sync::Mutex<Vec<(String, Arc<AtomicBool>)>>,
    /// Images pulled, and whether credentials came with the pull.
    pub pulled: std::sync::Mutex<Vec<(String, bool)>>,
    /// The registry prefix each build was to push under (`None`: kept in the engine).
    pub pushed_to: std::sync::Mutex<Vec<Option<String>>>,
}

impl ScriptedEngine {
    pub fn building(image: &str, lines: usize, duration: Duration) -> ScriptedEngine {
        ScriptedEngine {
            result: Ok(image.to_string()),
            lines: (0..lines).map(|i| format!("step {i}")).collect(),
            duration,
            builds: AtomicUsize::new(0),
            sessions: std::sync::Mutex::new(Vec::new()),
            pulled: std::sync::Mutex::new(Vec::new()),
            pushed_to: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn failing(message: &str) -> ScriptedEngine {
        ScriptedEngine {
            result: Err(message.to_string()),
            ..ScriptedEngine::building("unused", 1, Duration::ZERO)
        }
    }
}

#[async_trait]
impl ContainerEngine for ScriptedEngine {
    async fn build(
        &self,
        request: BuildRequest,
        sink: &mut dyn EventSink,
    ) -> Result<Built, BuildError> {
        self.builds.fetch_add(1, Ordering::SeqCst);
        self.pushed_to
            .lock()
            .unwrap()
            .push(request.push.as_ref().map(|p| p.prefix.clone()));
        sink.emit(Event::new(Phase::Fetching, "Fetching (scripted)"));
        for line in &self.lines {
            sink.emit(Event::new(Phase::Building, line.clone()));
        }
        tokio::time::sleep(self.duration).await;
        match &self.result {
            Ok(image) => {
                sink.emit(Event::built(image, format!("Built {image}")));
                Ok(Built {
                    image: image.clone(),
                    outcome: Outcome::Built,
                    plan: None,
                    contents: None,
                    digests: None,
                })
            }
            Err(message) => {
                sink.emit(Event::failed(500, message.clone()));
                Err(BuildError::Invalid(message.clone()))
            }
        }
    }

    async fn ping(&self) -> bool {
        true
    }

    fn version(&self) -> String {
        "scripted".into()
    }

    async fn start_session(&self, request: &RunRequest) -> Result<String, BuildError> {
        let stop = serve_status(request.port, &request.token);
        let id = format!("session-{}", request.port);
        self.sessions.lock().unwrap().push((id.clone(), stop));
        Ok(id)
    }

    async fn remove_session(&self, id: &str) {
        let mut sessions = self.sessions.lock().unwrap();
        if let Some(i) = sessions.iter().position(|(s, _)| s == id) {
            sessions.remove(i).1.store(true, Ordering::SeqCst);
        }
    }

    /// Images whose name holds `missing` cannot be had; the others are recorded.
    async fn pull(
        &self,
        image: &str,
        credentials: Option<kiln_builder::engine::DockerCredentials>,
    ) -> Result<(), BuildError> {
        if image.contains("missing") {
            return Err(BuildError::Engine(format!("pulling {image}: not found")));
        }
        self.pulled
            .lock()
            .unwrap()
            .push((image.to_string(), credentials.is_some()));
        Ok(())
    }

    /// Every image holds one Debian package, `scripted` at version 1, and says which it is.
    async fn contents(
        &self,
        image: &str,
        _registry: Option<&kiln_registry::Registry>,
    ) -> Result<kiln_builder::contents::Found, BuildError> {
        let mut contents = kiln_sbom::Contents::new(kiln_sbom::ImageMeta {
            kiln_version: "scripted".into(),
            image: Some(image.to_string()),
            ..Default::default()
        });
        contents.deb.push(kiln_sbom::DebPackage {
            name: "scripted".into(),
            architecture: "amd64".into(),
            version: "1".into(),
            source: "scripted".into(),
            source_version: None,
        });
        Ok(kiln_builder::contents::Found {
            contents,
            place: kiln_builder::contents::Place::Engine,
            size: None,
        })
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, BuildError> {
        Ok(Some(format!("sha256:scripted-{}", image.len())))
    }

    async fn remove_image(&self, _image: &str) {}

    /// Commands run in images whose name holds `broken` exit 1; the others print their argv.
    async fn run_command(
        &self,
        image: &str,
        argv: &[String],
        _timeout: Duration,
        _resources: &kiln_builder::engine::Resources,
        _credentials: Option<kiln_builder::engine::DockerCredentials>,
    ) -> Result<kiln_builder::engine::CommandOutput, BuildError> {
        Ok(kiln_builder::engine::CommandOutput {
            status: if image.contains("broken") { 1 } else { 0 },
            stdout: argv.join(" ").into_bytes(),
            stderr: Vec::new(),
        })
    }
}

/// Answer `GET /api/status` on 127.0.0.1:`port`: 200 with the token, 403 without. Stops when the
/// flag is set.
fn serve_status(port: u16, token: &str) -> Arc<AtomicBool> {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, expected) = (stop.clone(), format!("authorization: token {token}"));
    std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut authorised = false;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                authorised |= line.trim().eq_ignore_ascii_case(&expected);
                line.clear();
            }
            let (status, body) = if authorised {
                ("200 OK", r#"{"connections": 0, "kernels": 0}"#)
            } else {
                ("403 Forbidden", "{}")
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    stop
}

/// A service running in this process.
pub struct InProcess {
    pub http: Http,
    pub engine: Arc<ScriptedEngine>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for InProcess {
    type Target = Http;

    fn deref(&self) -> &Http {
        &self.http
    }
}

impl InProcess {
    /// Serve on a free port with `engine`; `configure` adjusts the settings (which start from the
    /// defaults, with 127.0.0.1 allowed as a repository host).
    pub fn start(engine: ScriptedEngine, configure: impl FnOnce(&mut Config)) -> InProcess {
        InProcess::start_with_clock(engine, kiln_api::catalog::system_clock(), configure)
    }

    /// [`InProcess::start`] with the catalogue's schedule and leases on `clock`.
    pub fn start_with_clock(
        engine: ScriptedEngine,
        clock: kiln_api::catalog::Clock,
        configure: impl FnOnce(&mut Config),
    ) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::load(None).unwrap();
        config.state = dir.path().join("state.db");
        config.catalog_state = dir.path().join("catalog.db");
        config.allowed_hosts = kiln_net::AllowList::parse("127.0.0.1:*").unwrap();
        config.development = true;
        config.image_prefix = None;
        config.hub_url = None;
        config.hub_api_token = None;
        configure(&mut config);
        let port = free_port();
        let engine = Arc::new(engine);
        let store = kiln_api::store::Store::open(&config.state).unwrap();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let service_engine: Arc<dyn ContainerEngine> = engine.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let state = AppState::with_clock(config, service_engine, store, clock).unwrap();
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .unwrap();
                ready_tx.send(()).unwrap();
                kiln_api::run(listener, state, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        InProcess {
            http: Http { port },
            engine,
            shutdown: Some(shutdown),
            thread: Some(thread),
            _dir: dir,
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
