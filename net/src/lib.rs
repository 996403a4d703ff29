//! # kiln-net: one guarded client for fetches driven by untrusted input
//!
//! kiln's service builds repositories for anonymous strangers. Every network fetch that a stranger
//! can steer — the git fetch of their repository and its submodules, the conda channels named in
//! their `environment.yml`, archive downloads — goes through this crate, so that a stranger cannot
//! reach private networks (SSRF, DNS rebinding) and cannot have the operator's credentials sent to
//! a host of their choosing.
//!
//! ## Module map
//!
//! | module | holds |
//! |---|---|
//! | [`ranges`] | the refused address ranges (IANA special-purpose, not globally reachable) and [`ranges::classify`] |
//! | [`allow`] | the operator's allow-list ([`AllowList`]): `host`, `host:port`, `host:*`, `[v6]:port` |
//! | [`policy`] | [`Policy`]: `open()` / `public()`, [`Policy::check_url`], [`Policy::resolve`] (resolve once, check every address) |
//! | [`http`] | the guarded reqwest client: [`http::guarded_client`], [`http::client_builder`], the policy's resolver and redirect policy |
//! | [`git`] | libgit2 transports for `http`, `https`, `git` and the per-fetch [`git::Scope`] ([`git::with_scope`]) |
//! | `git_http`, `git_proto` (private) | the smart-HTTP and `git://` subtransports behind [`git`] |
//!
//! Tests: unit tests next to the code (every range, the allow-list, `check_url`); `tests/http.rs`
//! and `tests/git.rs` run real servers on 127.0.0.1 (`git daemon`, `git http-backend` behind a small
//! HTTP server, redirectors, trickling servers) and name each hostile test after its attack.
//! | [`error`] | [`Error`], one type for the crate; [`error::redact`] |
//!
//! ## What is refused
//!
//! [`Policy::open`] (the command line, run by the operator on their own machine) refuses no address.
//! [`Policy::public`] (the service) refuses every address in these ranges unless the allow-list opens
//! the host:
//!
//! - IPv4: 0.0.0.0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.0.0/24, 192.0.2/24,
//!   192.88.99/24, 192.168/16, 198.18/15, 198.51.100/24, 203.0.113/24, 224/4, 240/4,
//!   255.255.255.255.
//! - IPv6: `::`, `::1`, `::/96` (IPv4-compatible), 64:ff9b:1::/48 (local-use NAT64: refused whole,
//!   since its translator decides where the embedded bits lead), 100::/64, 2001::/23 (Teredo
//!   included), 2001:db8::/32, 3fff::/20, 5f00::/16, fc00::/7, fe80::/10, fec0::/10, ff00::/8, and
//!   every address outside the global unicast space 2000::/3.
//! - IPv6 addresses that lead to an IPv4 address are judged by that address: `::ffff:0:0/96`
//!   (IPv4-mapped: `[::ffff:127.0.0.1]` is loopback), `64:ff9b::/96` (NAT64), `2002::/16` (6to4).
//!
//! A URL's IP literal is judged as the `url` crate normalises it (`http://2130706433/`,
//! `http://0x7f.1/`, `http://0177.0.0.1/` are all 127.0.0.1; `git://` URLs are normalised the same
//! way). A name is resolved once and refused when *any* of its addresses is refused; the caller
//! then connects to exactly those addresses.
//!
//! ## The allow-list
//!
//! Comma-separated entries ([`AllowList::parse`], the form of `KILN_ALLOWED_HOSTS`):
//! `git.internal` opens the well-known ports 22, 80, 443 and 9418 only; `git.internal:8080` one
//! port; `git.internal:*` every port; IPv6 as `[fd00::5]:443`. Hosts compare case-insensitively.
//! An entry matches the URL's host *as written*: `127.0.0.1:*` allows `git://127.0.0.1:9418/x`
//! but not `git://localhost/x`, and a name entry opens that name whatever it resolves to.
//!
//! ## HTTP
//!
//! ```no_run
//! # async fn demo() -> Result<(), kiln_net::Error> {
//! use kiln_net::{Policy, AllowList, http};
//! let policy = Policy::public().with_allowed(AllowList::parse("mirror.internal:8080")?);
//! let client = http::guarded_client(&policy, &http::Options::default())?;
//! let url = url::Url::parse("https://conda.example/channel/repodata.json").unwrap();
//! http::check(&policy, &url)?; // the first URL's IP literal is the caller's to check
//! let response = client.get(url).send().await;
//! if let Err(e) = &response {
//!     if let Some(refused) = http::guard_error(e) {
//!         eprintln!("{refused}");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The client's resolver is the policy's (every connection, after every redirect, uses checked
//! addresses), its redirect policy checks every hop (at most [`http::Options::max_redirects`], http
//! and https only, never https down to http, optionally same host only), and it uses no proxy.
//! hyper connects to an IP-literal host without asking a resolver: redirect hops are checked by the
//! redirect policy, but the *first* URL must be checked by the caller ([`http::check`]).
//! reqwest does not tell a resolver the port, so a name on the allow-list resolves to private
//! addresses on any port there; [`Policy::check_url`] refuses a listed name on an unlisted port,
//! which covers the first URL (when the caller checks it) and every hop.
//! [`http::client_builder`] gives the builder, for callers (the conda crate hands a client to rattler)
//! that add settings; they must not replace its resolver, redirect policy or proxy setting.
//!
//! ## git
//!
//! ```no_run
//! # fn demo() -> Result<(), kiln_net::Error> {
//! // In kiln this runs in tokio::task::spawn_blocking.
//! use std::time::Duration;
//! use kiln_net::{Policy, git::{self, Credentials, Scope}};
//! git::register()?; // once, at start-up
//! let scope = Scope::builder(Policy::public())
//!     .credentials(|url| (url.host_str() == Some("git.example"))
//!         .then(|| Credentials::new("kiln", "token")))
//!     .max_bytes(2 << 30)
//!     .timeout(Duration::from_secs(600))
//!     .build();
//! let refs = scope.run(|| {
//!     let mut remote = git2::Remote::create_detached("https://git.example/org/repo.git")?;
//!     let connection = remote.connect_auth(git2::Direction::Fetch, None, None)?;
//!     Ok(connection.list()?.iter().map(|h| h.name().to_string()).collect::<Vec<_>>())
//! })?;
//! # Ok(()) }
//! ```
//!
//! [`git::register`] replaces libgit2's transports for `http://`, `https://` and `git://` in the whole
//! process (call it once at start-up; [`git::with_scope`] calls it too). From then on:
//!
//! - **Every libgit2 network call on those schemes needs a scope**, also on the command line (use
//!   [`Policy::open`] there). The scope is a thread-local, set for the duration of the closure given
//!   to [`git::with_scope`] / [`git::Scope::run`]. libgit2 creates its transport on the thread that
//!   calls it — `Remote::connect_auth` (ls-remote), `Remote::fetch`, `Submodule::update` (which
//!   clones or fetches the submodule on the same thread), `Repository::clone` — and the transport
//!   takes the thread's scope then, for its whole life. Outside a scope the transports refuse to
//!   connect ([`Error::NoScope`]); a scope on one thread is not another thread's.
//! - **Errors**: [`git::Scope::run`] turns libgit2's error into the transport's own when one of the
//!   guards stopped it: [`Error::Refused`], [`Error::PortNotAllowed`], [`Error::Redirect`],
//!   [`Error::RedirectRefused`], [`Error::TooLarge`] `{ limit }`, [`Error::TimedOut`] `{ limit }`,
//!   [`Error::Authentication`], [`Error::Stalled`], ...; anything else is [`Error::Git`].
//! - **Credentials** come from [`git::ScopeBuilder::credentials`]: called on an HTTP 401 with the
//!   exact URL being requested (after any redirect); what it returns is bound to that URL's origin
//!   (scheme, host, port), sent to that origin only (for the rest of the scope, without asking again)
//!   and never to another hop; a 401 to credentials already sent is an authentication error, with
//!   no retry loop. libgit2's own `RemoteCallbacks::credentials` and `certificate_check` are not
//!   called for these schemes (they still are for ssh).
//! - **Budget and deadline** ([`git::ScopeBuilder::max_bytes`], [`git::ScopeBuilder::timeout`]) are
//!   shared by every request of the scope (a fetch, its retries, its submodules), counted as bytes
//!   arrive (HTTP response bodies; every byte of a `git://` connection); the deadline starts when the
//!   scope is built. Once spent, every later request of the scope fails at once.
//! - **Redirects** (git HTTP): followed on the first request only (`info/refs`, git's "initial"
//!   behaviour), to the same host only (another port or an upgrade to https is the same host), never
//!   from https down to http, at most [`git::ScopeBuilder::max_redirects`] hops, each through
//!   [`Policy::check_url`]; the POSTs then go to the redirected repository URL.
//! - **Depth-1 fetches** work over both transports (`FetchOptions::depth(1)`, also by SHA when the
//!   server allows it).
//! - **Threads**: the HTTP transport polls reqwest's futures on the libgit2 thread, with a small
//!   runtime of its own (one worker thread per scope, made on first use) driving the sockets; it
//!   works from a plain thread or tokio's blocking pool (`spawn_blocking`, as kiln does), and on an
//!   async worker it blocks that worker (do not) but does not panic. `git://` uses blocking sockets.
//! - **Not guarded here**: `ssh://`, scp-like `user@host:path`, `file://` and local paths stay
//!   libgit2's own transports. Check every URL before handing it to libgit2 — a repository's and each
//!   submodule's from `.gitmodules` — with [`git::check_remote`], which refuses them.
//! - **TLS** is rustls with the platform's roots (on Linux they honour `SSL_CERT_FILE` and
//!   `SSL_CERT_DIR`), plus [`git::ScopeBuilder::root_certificates`].

pub mod allow;
pub mod error;
pub mod git;
mod git_http;
mod git_proto;
pub mod http;
pub mod policy;
pub mod ranges;

pub use allow::{AllowList, Entry, HostKey, Ports};
pub use error::Error;
pub use policy::{GIT_SCHEMES, HTTP_SCHEMES, Policy, Target};
