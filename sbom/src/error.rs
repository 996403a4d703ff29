/// What can go wrong reading collected output, a record, or writing pins from it.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error(
        "the collected output is incomplete ({0}); run the whole collection script (kiln_sbom::collect::script) in the image and pass all of its standard output"
    )]
    Incomplete(String),

    #[error(
        "collecting `{section}` failed in the image (exit status {status}); its standard error says why"
    )]
    SectionFailed { section: String, status: i32 },

    #[error("{section}{}: {reason}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Parse {
        section: String,
        line: Option<usize>,
        reason: String,
    },

    #[error("no {manager} environment {wanted:?} in the record; it has {}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoEnvironment {
        manager: &'static str,
        wanted: String,
        available: Vec<String>,
    },

    #[error("{0}")]
    Invalid(String),
}

impl SbomError {
    pub(crate) fn parse(section: &str, line: Option<usize>, reason: impl Into<String>) -> Self {
        SbomError::Parse {
            section: section.to_string(),
            line,
            reason: reason.into(),
        }
    }
}
