//! kiln's HTTP service, compatible with BinderHub. One request, in the order of the files:
//!
//! - [`routes`]: the routes by audience (BinderHub's `/build` API, the JSON API, the pages,
//!   operations), over the shared [`state`];
//! - [`auth`]: who is calling: the operator, a hub user (a hub token, or the session cookie of a
//!   hub login), or an anonymous address;
//! - [`admission`]: whether they may: who may build, the rate limit per client, spec patterns,
//!   the build token;
//! - [`spec`]: BinderHub's `<provider>/<spec>` into a source, and whether its host may be fetched;
//! - [`credentials`]: a hub user's own git tokens, sealed per user and host, attached to their
//!   builds of that host's repositories (which then become private);
//! - [`builds`]: one shared, queued build per repository and ref, run on the [`engine`] and
//!   recorded in the [`store`] (SQLite, off the async threads);
//! - [`sse`]: events streamed with BinderHub's framing;
//! - [`launch`]: sessions on a JupyterHub or on the service's own engine, behind quotas;
//! - [`catalog`]: communities (a folder of files, watched) and their catalogues: checks, versions
//!   built, smoke-tested and promoted, the spawn form's profile list, the scheduler;
//! - [`config`], [`metrics`], [`error`].
//!
//! `kiln serve` and the tests start the service the same way: [`AppState::new`], then [`run`].

pub mod admission;
pub mod auth;
pub mod builds;
pub mod catalog;
pub mod config;
pub mod credentials;
pub mod engine;
pub mod error;
pub mod launch;
pub mod metrics;
pub mod routes;
pub mod spec;
pub mod sse;
pub mod state;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::Config;
pub use engine::ContainerEngine;
pub use error::StartError;
pub use state::AppState;

/// Serve `state` on `listener` until `shutdown` completes, then remove the local sessions the
/// service started (sessions on a hub stay: the hub owns them). The background work (idle culling,
/// the hub reaper) runs meanwhile.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    state.launchers.spawn_background();
    let stop = tokio_util::sync::CancellationToken::new();
    let tick = std::time::Duration::from_secs(state.config.catalog_tick_seconds.max(1));
    let scheduler = tokio::spawn(catalog::schedule(
        state.clone(),
        tick,
        stop.clone().cancelled_owned(),
    ));
    let router = routes::router(state.clone());
    let served = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    stop.cancel();
    scheduler.abort();
    served?;
    state.launchers.stop_local_sessions().await;
    Ok(())
}
