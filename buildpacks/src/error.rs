use std::path::PathBuf;

/// Why a repository cannot be planned. Every message says what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{path}: not a directory; give the path of a repository folder")]
    NotADirectory { path: PathBuf },

    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{path}: is a symbolic link that points outside the repository; kiln never follows those"
    )]
    SymlinkOutside { path: String },

    #[error("{path}: is not a regular file; remove it or replace it with a file")]
    NotAFile { path: String },

    #[error(
        "{path}: {size} bytes is larger than the {limit} bytes kiln reads from a configuration file"
    )]
    TooLarge { path: String, size: u64, limit: u64 },

    #[error("{path}: is not UTF-8 text (invalid byte at offset {offset}); save it as UTF-8")]
    NotText { path: String, offset: usize },

    #[error(
        "both binder/ and .binder/ exist; they are exclusive: keep the configuration in one of them"
    )]
    BothBinderDirs,

    #[error("{path}:{line}:{column}: invalid {format}: {message}")]
    Syntax {
        path: String,
        format: &'static str,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("{path}:{line}: {message}")]
    InvalidLine {
        path: String,
        line: usize,
        message: String,
    },

    #[error("{path}: {message}")]
    Invalid { path: String, message: String },

    #[error(
        "{path}: the Dockerfile builds FROM andrewosh/binder-base, the legacy Binder image that was retired in 2020; \
         build FROM another image, or remove the Dockerfile and describe the environment with environment.yml or requirements.txt"
    )]
    LegacyBinderDockerfile { path: String },

    #[error(
        "{path}: REQUIRE files (Julia 0.6 and earlier) are no longer supported; describe the Julia environment \
         with a Project.toml (and Manifest.toml) instead"
    )]
    JuliaRequire { path: String },
}

impl PlanError {
    pub(crate) fn invalid(path: &str, message: impl Into<String>) -> Self {
        PlanError::Invalid {
            path: path.to_string(),
            message: message.into(),
        }
    }
}
