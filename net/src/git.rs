//! libgit2 transports for `http://`, `https://` and `git://` that connect only through a [`Policy`],
//! and the [`Scope`] that carries one fetch's settings to them.
//!
//! Registration is process-wide ([`register`], done once): from then on every libgit2 operation on
//! these schemes, in the whole process, uses kiln-net's transports. They refuse to connect unless the
//! calling thread is inside [`with_scope`] (or [`Scope::run`]), so no fetch escapes the policy by
//! forgetting it. libgit2 creates a transport on the thread that calls it (`Remote::connect_auth`,
//! `Remote::fetch`, `Submodule::update`, `Repository::clone`): the transport takes the thread's scope
//! when it is created and keeps it for its whole life.
//!
//! What the transports do not do: `ssh://`, scp-like `user@host:path`, `file://` and local paths are
//! left to libgit2 (refuse them before calling libgit2: [`check_remote`]); libgit2's `credentials`
//! and `certificate_check` callbacks are not called for the schemes above (credentials come from
//! [`ScopeBuilder::credentials`], TLS is rustls with the platform's roots); proxies and custom
//! headers in `FetchOptions` are ignored; pushing is refused.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use url::Url;

use crate::error::{Error, redact_str};
use crate::policy::{GIT_SCHEMES, Policy};

/// A user name and a password (or token) for HTTP Basic authentication. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Called on an HTTP 401 with the exact URL being requested (after any redirect); the credentials it
/// returns are sent to that URL's origin (scheme, host, port) only.
pub type CredentialProvider = dyn Fn(&Url) -> Option<Credentials> + Send + Sync;

/// The settings of one fetch (a repository, its submodules) and the budget they share.
#[derive(Clone)]
pub struct Scope {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) policy: Policy,
    pub(crate) provider: Option<Arc<CredentialProvider>>,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) connect_timeout: Duration,
    pub(crate) io_timeout: Duration,
    pub(crate) max_redirects: usize,
    extra_roots: Vec<reqwest::Certificate>,
    pub(crate) received: AtomicU64,
    pub(crate) requests: AtomicU64,
    failure: Mutex<Option<Error>>,
    /// Credentials by the origin they were returned for.
    credentials: Mutex<HashMap<String, Credentials>>,
    http: OnceLock<Result<HttpRuntime, String>>,
}

/// The git HTTP transport's client and the runtime behind it. The runtime's one worker thread drives
/// the sockets and timers; the libgit2 thread polls each request's future itself (parking between
/// polls), inside the runtime's context. So the transport works from any thread — a plain thread,
/// tokio's blocking pool, even (blocking it) an async worker — with no nested `block_on`.
pub(crate) struct HttpRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    pub(crate) client: reqwest::Client,
}

impl HttpRuntime {
    fn new(client: reqwest::Client) -> Result<HttpRuntime, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kiln-net-git-http")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpRuntime {
            runtime: Some(runtime),
            client,
        })
    }

    /// Make a future inside the runtime's context (reqwest starts its timers when a request is
    /// made) and poll it to completion on this thread.
    pub(crate) fn block_on<F: std::future::Future>(&self, make: impl FnOnce() -> F) -> F::Output {
        use std::task::{Context, Poll, Wake, Waker};
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
            fn wake_by_ref(self: &Arc<Self>) {
                self.0.unpark();
            }
        }
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as its owner");
        let _context = runtime.enter();
        let mut future = std::pin::pin!(make());
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            std::thread::park();
        }
    }
}

impl Drop for HttpRuntime {
    fn drop(&mut self) {
        // A scope may be dropped on an async worker thread: shutting down in the background does
        // not block there (dropping a runtime would panic).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Builds a [`Scope`]; the deadline starts when [`ScopeBuilder::build`] is called.
pub struct ScopeBuilder {
    policy: Policy,
    provider: Option<Arc<CredentialProvider>>,
    max_bytes: Option<u64>,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    io_timeout: Duration,
    max_redirects: usize,
    extra_roots: Vec<reqwest::Certificate>,
}

impl ScopeBuilder {
    /// Where credentials come from; without a provider a 401 is an authentication error.
    pub fn credentials(
        mut self,
        provider: impl Fn(&Url) -> Option<Credentials> + Send + Sync + 'static,
    ) -> ScopeBuilder {
        self.provider = Some(Arc::new(provider));
        self
    }

    /// The most bytes every request of the scope may receive, together.
    pub fn max_bytes(mut self, limit: u64) -> ScopeBuilder {
        self.max_bytes = Some(limit);
        self
    }

    /// How long every request of the scope may take, together (from [`ScopeBuilder::build`]).
    pub fn timeout(mut self, limit: Duration) -> ScopeBuilder {
        self.timeout = Some(limit);
        self
    }

    /// How long opening one connection may take (default 10 s).
    pub fn connect_timeout(mut self, limit: Duration) -> ScopeBuilder {
        self.connect_timeout = limit;
        self
    }

    /// How long a server may send nothing (default 60 s).
    pub fn io_timeout(mut self, limit: Duration) -> ScopeBuilder {
        self.io_timeout = limit;
        self
    }

    /// The most redirects the first request of a git HTTP fetch follows (default 5).
    pub fn max_redirects(mut self, limit: usize) -> ScopeBuilder {
        self.max_redirects = limit;
        self
    }

    /// Certificate authorities trusted for `https://` besides the platform's (which honour
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR` on Linux).
    pub fn root_certificates(mut self, roots: Vec<reqwest::Certificate>) -> ScopeBuilder {
        self.extra_roots = roots;
        self
    }

    pub fn build(self) -> Scope {
        Scope {
            inner: Arc::new(Inner {
                deadline: self.timeout.map(|t| Instant::now() + t),
                policy: self.policy,
                provider: self.provider,
                max_bytes: self.max_bytes,
                timeout: self.timeout,
                connect_timeout: self.connect_timeout,
                io_timeout: self.io_timeout,
                max_redirects: self.max_redirects,
                extra_roots: self.extra_roots,
                received: AtomicU64::new(0),
                requests: AtomicU64::new(0),
                failure: Mutex::new(None),
                credentials: Mutex::new(HashMap::new()),
                http: OnceLock::new(),
            }),
        }
    }
}

impl Scope {
    /// A scope with `policy` and the default limits (none on bytes or total time).
    pub fn builder(policy: Policy) -> ScopeBuilder {
        ScopeBuilder {
            policy,
            provider: None,
            max_bytes: None,
            timeout: None,
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(60),
            max_redirects: 5,
            extra_roots: Vec::new(),
        }
    }

    /// A scope with `policy` and nothing else.
    pub fn new(policy: Policy) -> Scope {
        Scope::builder(policy).build()
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Bytes received so far by every request of the scope.
    pub fn received(&self) -> u64 {
        self.inner.received.load(Ordering::SeqCst)
    }

    /// Connections (git://) and HTTP requests opened so far.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Run `f` (libgit2 calls) in this scope and turn a libgit2 error into the transport's own error
    /// when one of kiln-net's guards stopped it ([`Error::Refused`], [`Error::TooLarge`],
    /// [`Error::TimedOut`], [`Error::Authentication`], ...), else [`Error::Git`].
    pub fn run<T>(&self, f: impl FnOnce() -> Result<T, git2::Error>) -> Result<T, Error> {
        drop(self.take_failure());
        with_scope(self, f)?.map_err(|e| self.error(e))
    }

    /// The error behind a libgit2 error raised in this scope: the first error kiln-net's transports
    /// raised since the last [`Scope::run`] or [`Scope::take_failure`], else `Error::Git(e)`.
    pub fn error(&self, e: git2::Error) -> Error {
        self.take_failure().unwrap_or(Error::Git(e))
    }

    /// The first error kiln-net's transports raised in this scope (and forget it).
    pub fn take_failure(&self) -> Option<Error> {
        lock(&self.inner.failure).take()
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Scope")
            .field("policy", &inner.policy)
            .field(
                "credentials",
                &inner.provider.as_ref().map(|_| "<provider>"),
            )
            .field("max_bytes", &inner.max_bytes)
            .field("timeout", &inner.timeout)
            .field("received", &self.received())
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Record an error for [`Scope::error`] (the first one wins) and return its message.
    pub(crate) fn record(&self, e: Error) -> String {
        let message = e.to_string();
        tracing::debug!(error = %message, "kiln-net transport error");
        let mut slot = lock(&self.failure);
        if slot.is_none() {
            *slot = Some(e);
        }
        message
    }

    pub(crate) fn git_error(&self, e: Error) -> git2::Error {
        let class = match e {
            Error::Authentication { .. } => git2::ErrorClass::Http,
            _ => git2::ErrorClass::Net,
        };
        let code = match e {
            Error::Authentication { .. } => git2::ErrorCode::Auth,
            _ => git2::ErrorCode::GenericError,
        };
        git2::Error::new(code, class, self.record(e))
    }

    pub(crate) fn io_error(&self, e: Error) -> std::io::Error {
        std::io::Error::other(self.record(e))
    }

    /// The deadline, as an error once it has passed.
    pub(crate) fn check_time(&self) -> Result<(), Error> {
        match (self.deadline, self.timeout) {
            (Some(deadline), Some(limit)) if Instant::now() >= deadline => {
                Err(Error::TimedOut { limit })
            }
            _ => Ok(()),
        }
    }

    /// Time left before the deadline (`None`: no deadline).
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The budget, as an error once it is spent.
    pub(crate) fn check_budget(&self) -> Result<(), Error> {
        match self.max_bytes {
            Some(limit) if self.received.load(Ordering::SeqCst) > limit => {
                Err(Error::TooLarge { limit })
            }
            _ => Ok(()),
        }
    }

    /// Count `n` bytes that arrived.
    pub(crate) fn account(&self, n: usize) -> Result<(), Error> {
        self.received.fetch_add(n as u64, Ordering::SeqCst);
        self.check_budget()?;
        self.check_time()
    }

    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn credentials_for(&self, origin: &str) -> Option<Credentials> {
        lock(&self.credentials).get(origin).cloned()
    }

    pub(crate) fn bind_credentials(&self, origin: &str, credentials: Credentials) {
        lock(&self.credentials).insert(origin.to_string(), credentials);
    }

    /// The scope's HTTP client and its runtime (built on first use, on the libgit2 thread).
    pub(crate) fn http(&self) -> Result<&HttpRuntime, Error> {
        let built = self.http.get_or_init(|| {
            let options = crate::http::Options {
                connect_timeout: self.connect_timeout,
                read_timeout: Some(self.io_timeout),
                user_agent: concat!("git/2.0 (kiln-net/", env!("CARGO_PKG_VERSION"), ")")
                    .to_string(),
                extra_roots: self.extra_roots.clone(),
                ..crate::http::Options::default()
            };
            // Redirects are followed by the transport itself, hop by hop.
            let client = crate::http::client_builder(&self.policy, &options)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| e.to_string())?;
            HttpRuntime::new(client)
        });
        built.as_ref().map_err(|e| Error::Setup(e.clone()))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Inner>>> = const { RefCell::new(None) };
}

/// Run `f` with `scope` as this thread's scope: every libgit2 transport created on this thread while
/// `f` runs (a fetch, an ls-remote, a submodule update or clone) takes `scope`. The previous scope is
/// restored afterwards, also when `f` panics. Registers the transports first if needed ([`register`]);
/// the only error is a failed registration, in which case `f` is not run.
pub fn with_scope<R>(scope: &Scope, f: impl FnOnce() -> R) -> Result<R, Error> {
    register()?;
    struct Restore(Option<Arc<Inner>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|c| c.replace(Some(scope.inner.clone())));
    let _restore = Restore(previous);
    Ok(f())
}

fn current_scope() -> Option<Arc<Inner>> {
    CURRENT.with(|c| c.borrow().clone())
}

static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();

/// Register kiln-net's transports for `http`, `https` and `git` with libgit2, once per process.
///
/// libgit2 keeps its transports in a process-wide list without a lock: call this early (at start-up,
/// before other threads use libgit2); [`with_scope`] calls it too, as a fallback.
pub fn register() -> Result<(), Error> {
    REGISTERED
        .get_or_init(|| {
            for scheme in ["http", "https", "git"] {
                // SAFETY: `get_or_init` runs this once per process; the factories are 'static,
                // thread-safe closures (git2 keeps them for the life of the process).
                let registered = unsafe {
                    git2::transport::register(scheme, move |remote| factory(remote, scheme))
                };
                registered.map_err(|e| format!("{scheme}://: {}", e.message()))?;
            }
            Ok(())
        })
        .clone()
        .map_err(Error::Register)
}

/// Make the transport for `remote`. It never fails here (git2 would lose the message of an error
/// returned by a factory): without a scope, the transport refuses when libgit2 asks it to connect.
fn factory(
    remote: &git2::Remote<'_>,
    scheme: &'static str,
) -> Result<git2::transport::Transport, git2::Error> {
    use git2::transport::Transport;
    match (current_scope(), scheme) {
        (None, _) => Transport::smart(remote, scheme != "git", NoScope),
        (Some(scope), "git") => {
            Transport::smart(remote, false, crate::git_proto::GitProtocol::new(scope))
        }
        (Some(scope), _) => Transport::smart(remote, true, crate::git_http::SmartHttp::new(scope)),
    }
}

/// The transport of a libgit2 call made outside any scope: it refuses to connect.
struct NoScope;

impl git2::transport::SmartSubtransport for NoScope {
    fn action(
        &self,
        url: &str,
        _action: git2::transport::Service,
    ) -> Result<Box<dyn git2::transport::SmartSubtransportStream>, git2::Error> {
        Err(git2::Error::new(
            git2::ErrorCode::GenericError,
            git2::ErrorClass::Net,
            Error::NoScope {
                url: redact_str(url),
            }
            .to_string(),
        ))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

/// Check a remote URL before handing it to libgit2 (a repository's URL, a submodule's URL from
/// `.gitmodules`): only `http`, `https` and `git` with a host, and the address rules of `policy`.
/// `ssh://`, scp-like `user@host:path`, `file://` and local paths are refused here: they would not go
/// through kiln-net's transports.
pub fn check_remote(policy: &Policy, url: &str) -> Result<(), Error> {
    let parsed = Url::parse(url).map_err(|e| Error::InvalidUrl {
        url: redact_str(url),
        reason: format!("{e} (kiln fetches http, https and git URLs only; local paths and scp-like ssh addresses are refused)"),
    })?;
    policy.check_url(&parsed, GIT_SCHEMES).map(|_| ())
}

/// A remote URL as the transports use it: parsed, without user name or password (credentials come
/// from the scope's provider only).
pub(crate) fn parse_remote(url: &str) -> Result<Url, Error> {
    let mut parsed = Url::parse(url).map_err(|e| Error::InvalidUrl {
        url: redact_str(url),
        reason: e.to_string(),
    })?;
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret() {
        let c = Credentials::new("alice", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        let scope = Scope::builder(Policy::public())
            .credentials(|_| Some(Credentials::new("alice", "hunter2")))
            .build();
        scope
            .inner
            .bind_credentials("https://git.example", Credentials::new("alice", "hunter2"));
        let shown = format!("{scope:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<provider>"), "{shown}");
    }

    #[test]
    fn remotes_other_than_http_and_git_are_refused() {
        let policy = Policy::open();
        for url in [
            "file:///etc",
            "/srv/repo",
            "../sibling.git",
            "git@github.com:org/repo.git",
            "ssh://git@github.com/org/repo.git",
            "git+ssh://git@github.com/org/repo.git",
        ] {
            assert!(check_remote(&policy, url).is_err(), "{url}");
        }
        assert!(check_remote(&policy, "https://github.com/org/repo").is_ok());
        assert!(check_remote(&Policy::public(), "git://127.0.0.1/repo").is_err());
    }

    #[test]
    fn limits() {
        let scope = Scope::builder(Policy::open()).max_bytes(10).build();
        assert!(scope.inner.account(10).is_ok());
        assert!(matches!(
            scope.inner.account(1),
            Err(Error::TooLarge { limit: 10 })
        ));
        let scope = Scope::builder(Policy::open())
            .timeout(Duration::from_millis(0))
            .build();
        assert!(matches!(
            scope.inner.check_time(),
            Err(Error::TimedOut { .. })
        ));
    }
}
