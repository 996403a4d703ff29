use std::time::Duration;

/// Why a build (or a step of it) failed. Every message says what went wrong and what to do; none
/// holds a credential.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot use {spec:?} as a source: {reason}")]
    BadSource { spec: String, reason: String },

    #[error("cannot reach the repository {url}: {reason}")]
    Unreachable { url: String, reason: String },

    #[error(
        "authentication to {url} failed; give credentials in the URL, or in the environment (KILN_GIT_USERNAME and KILN_GIT_PASSWORD, or a git credential helper) for the hosts named in KILN_GIT_CREDENTIAL_HOSTS"
    )]
    Authentication { url: String },

    #[error("kiln does not fetch {url}: {reason}")]
    Refused { url: String, reason: String },

    #[error("{url} has no branch, tag or commit {reference:?}{hint}")]
    UnknownRef {
        url: String,
        reference: String,
        hint: String,
    },

    #[error("fetching {url} failed: {reason}")]
    Fetch { url: String, reason: String },

    #[error(
        "the repository is larger than the limit of {limit} {unit}; raise it with {option} if this is expected"
    )]
    TooLarge {
        limit: u64,
        unit: &'static str,
        option: &'static str,
    },

    #[error(
        "fetching took longer than the limit of {0:?}; raise it with --fetch-timeout if this is expected"
    )]
    FetchTimeout(Duration),

    #[error(transparent)]
    Plan(#[from] kiln_buildpacks::PlanError),

    #[error("cannot read the repository at {path}: {reason}")]
    Context { path: String, reason: String },

    #[error(
        "no container engine answers at {endpoint}: {reason}. Start one (bash tests/services/engine.sh starts Docker here) or point DOCKER_HOST at it"
    )]
    NoEngine { endpoint: String, reason: String },

    #[error(
        "the engine has no default network for builds and containers; set KILN_NETWORK=host (or --network host) on a machine where that is safe"
    )]
    NoDefaultNetwork,

    #[error("the engine failed: {0}")]
    Engine(String),

    #[error("the build failed: {message}{tail}")]
    BuildFailed { message: String, tail: String },

    #[error(transparent)]
    Conda(#[from] kiln_conda::CondaError),

    #[error("the operating system gave no random bytes: {0}")]
    Random(String),

    #[error("pushing failed: {0}")]
    Push(String),

    #[error(transparent)]
    Registry(#[from] kiln_registry::RegistryError),

    #[error("{0}")]
    Invalid(String),

    #[error("the record at {url}: {reason}")]
    Record {
        url: String,
        reason: String,
        /// 400, 403, 404 or 502, as `status_code` reports it.
        status: u16,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// The HTTP status that says what kind of failure this is, for the service's `failed` events:
    /// 400 the request is wrong, 403 refused by a policy or a limit on what may be fetched, 404
    /// nothing to build there, 500 the build itself failed.
    pub fn status_code(&self) -> u16 {
        match self {
            BuildError::BadSource { .. } | BuildError::Invalid(_) => 400,
            BuildError::Refused { .. }
            | BuildError::Authentication { .. }
            | BuildError::TooLarge { .. } => 403,
            BuildError::UnknownRef { .. } | BuildError::Unreachable { .. } => 404,
            BuildError::Record { status, .. } => *status,
            _ => 500,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BuildError::Io {
            context: context.into(),
            source,
        }
    }
}
