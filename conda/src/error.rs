//! What can go wrong with a conda environment. Every message says what went wrong and what to do.

/// Why solving, installing or packing a conda environment failed.
#[derive(Debug, thiserror::Error)]
pub enum CondaError {
    #[error("{0}")]
    Invalid(String),

    #[error("cannot read the conda lock {path}: {reason}")]
    Lock { path: String, reason: String },

    #[error(
        "cannot load the conda channel {channel} ({url}): {reason}. Check that it can be reached from this machine, or map it to a mirror with KILN_CONDA_MIRRORS (e.g. conda-forge=https://mirror.example/conda-forge/)"
    )]
    Channel {
        channel: String,
        url: String,
        reason: String,
    },

    #[error("the conda environment cannot be solved:\n{0}")]
    Unsolvable(String),

    #[error("cannot download {url}: {reason}")]
    Download { url: String, reason: String },

    #[error(
        "{url}: its sha256 is {actual}, but the lock says {expected}; refusing to install it (the package changed on the channel, or the lock is wrong)"
    )]
    Sha256Mismatch {
        url: String,
        expected: String,
        actual: String,
    },

    #[error("installing the conda environment failed: {0}")]
    Install(String),

    #[error("kiln does not fetch {url}: {reason}")]
    Refused { url: String, reason: String },

    #[error(
        "the conda package {package} would write outside its environment ({path}); kiln refuses to install it"
    )]
    Escapes { package: String, path: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl CondaError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CondaError::Io {
            context: context.into(),
            source,
        }
    }
}
