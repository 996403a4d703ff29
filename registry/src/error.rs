/// Registry failures. Messages never hold a password or a token.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{reference:?} is not a valid image reference: {reason}")]
    InvalidReference { reference: String, reason: String },

    #[error(
        "the registry {registry} refused the credentials (HTTP {status}); check the user name and password (KILN_REGISTRY_USERNAME, KILN_REGISTRY_PASSWORD or ~/.docker/config.json)"
    )]
    Unauthorized { registry: String, status: u16 },

    #[error("cannot reach the registry {registry} after {attempts} attempts: {reason}")]
    Unreachable {
        registry: String,
        attempts: u32,
        reason: String,
    },

    #[error("the registry {registry} answered: {reason}")]
    Registry { registry: String, reason: String },

    #[error("{0}")]
    Invalid(String),
}
