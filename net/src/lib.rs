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
//! process. The transports connect only inside [`git::with_scope`] / [`git::Scope::run`]: the scope is
//! a thread-local, set for the duration of the closure, and libgit2 creates each transport on the
//! calling thread (fetch, ls-remote, submodule update and clone alike), which takes the scope then.
//! Outside a scope they refuse to connect ([`Error::NoScope`]). The scope carries the policy, the
//! credential provider (called on a 401 with the exact URL requested; credentials go to that origin
//! only, never across a redirect; a second 401 is [`Error::Authentication`]), and a byte budget and
//! deadline shared by every request in it ([`Error::TooLarge`], [`Error::TimedOut`], enforced as
//! bytes arrive). git HTTP redirects are followed on the first request only (info/refs), to the
//! same host, each hop checked. Check submodule URLs with [`git::check_remote`] before updating them:
//! `ssh://`, `file://` and local paths are libgit2's own transports, not guarded here.

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
