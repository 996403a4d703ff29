//! The service's errors. Each message says what went wrong and what to do; none holds a secret.

use std::path::PathBuf;

/// A setting that cannot be used, found at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// The state database failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("the state database failed: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the state database did not store a write: {0}")]
    NotCommitted(String),
    #[error("the state database's writer has stopped")]
    Stopped,
}

/// A launch that did not end in a running session. Shown to the user in the `failed` event.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A quota is full.
    #[error("{0}")]
    Quota(String),
    /// The engine could not start the session.
    #[error(transparent)]
    Engine(#[from] kiln_builder::BuildError),
    #[error("the session did not answer within {seconds} s")]
    NotReady { seconds: u64 },
    /// The hub refused, failed or could not be reached; the message carries the hub's reason.
    #[error("{0}")]
    Hub(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LaunchError {
    /// 429 for a full quota, 500 for everything else (the status of the `failed` event).
    pub fn status_code(&self) -> u16 {
        match self {
            LaunchError::Quota(_) => 429,
            _ => 500,
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Build(#[from] kiln_builder::BuildError),
    #[error("cannot serve: {0}")]
    Serve(#[from] std::io::Error),
}
