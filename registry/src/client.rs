//! The registry client, on `oci-client`: anonymous, basic and bearer-token auth, plain http for
//! loopback registries, bounded retries with backoff, existence checks, blob upload and
//! cross-repository mount (with a fallback to upload), manifests.

use std::time::Duration;

use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::error::RegistryError;
use crate::name::validate;

/// Media types of image manifests kiln reads.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
const ATTEMPTS: u32 = 4;

/// Registry credentials; `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

impl Credentials {
    /// Credentials for `host`: `KILN_REGISTRY_TOKEN`, or `KILN_REGISTRY_USERNAME` and
    /// `KILN_REGISTRY_PASSWORD`, or the `auths` entry of `~/.docker/config.json` (or `$DOCKER_CONFIG`).
    pub fn from_environment(host: &str) -> Option<Credentials> {
        if let Ok(token) = std::env::var("KILN_REGISTRY_TOKEN")
            && !token.is_empty()
        {
            return Some(Credentials::Bearer(token));
        }
        if let (Ok(username), Ok(password)) = (
            std::env::var("KILN_REGISTRY_USERNAME"),
            std::env::var("KILN_REGISTRY_PASSWORD"),
        ) {
            return Some(Credentials::Basic { username, password });
        }
        let dir = std::env::var("DOCKER_CONFIG")
            .map(std::path::PathBuf::from)
            .or_else(|_| std::env::var("HOME").map(|h| std::path::Path::new(&h).join(".docker")))
            .ok()?;
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()?;
        let auth = config["auths"][host]["auth"].as_str()?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()?;
        let (username, password) = String::from_utf8(decoded)
            .ok()?
            .split_once(':')
            .map(|(u, p)| (u.to_string(), p.to_string()))?;
        Some(Credentials::Basic { username, password })
    }

    fn auth(&self) -> RegistryAuth {
        match self {
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Bearer(token) => RegistryAuth::Bearer(token.clone()),
        }
    }
}

/// How a blob reached the target repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobTransfer {
    AlreadyThere,
    Mounted,
    Uploaded,
}

/// A client for one registry host.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    pub host: String,
    pub credentials: Option<Credentials>,
}

/// Whether a registry host is on this machine's loopback (then plain http is used, as Docker does).
pub fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    name == "localhost"
        || name == "[::1]"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Registry {
    /// A client for the registry of `reference`, with `credentials` or those of the environment.
    pub fn for_reference(
        reference: &str,
        credentials: Option<Credentials>,
    ) -> Result<Registry, RegistryError> {
        let parsed = validate(reference)?;
        let host = parsed.resolve_registry().to_string();
        let credentials = credentials.or_else(|| Credentials::from_environment(&host));
        let protocol = if is_loopback(&host) {
            ClientProtocol::HttpsExcept(vec![host.clone()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            ..Default::default()
        });
        Ok(Registry {
            client,
            auth: credentials
                .as_ref()
                .map_or(RegistryAuth::Anonymous, Credentials::auth),
            host,
            credentials,
        })
    }

    /// The raw `oci-client` client and its credentials, for the modules of this crate that speak
    /// parts of the API this type does not wrap (referrers).
    pub(crate) fn oci(&self) -> (&Client, &RegistryAuth) {
        (&self.client, &self.auth)
    }

    pub(crate) fn reference(&self, reference: &str) -> Result<Reference, RegistryError> {
        validate(reference)
    }

    /// Run `op` with up to four attempts and exponential backoff for transient failures.
    pub(crate) async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        let mut delay = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match op().await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    if let Some(status) = unauthorized(&e) {
                        return Err(RegistryError::Unauthorized {
                            registry: self.host.clone(),
                            status,
                        });
                    }
                    if !transient(&e) {
                        return Err(RegistryError::Registry {
                            registry: self.host.clone(),
                            reason: describe(&e),
                        });
                    }
                    last = describe(&e);
                    if attempt < ATTEMPTS {
                        tracing::debug!(attempt, error = %last, "registry request failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
        Err(RegistryError::Unreachable {
            registry: self.host.clone(),
            attempts: ATTEMPTS,
            reason: last,
        })
    }

    /// Authenticate for `operation` (a no-op for anonymous access).
    pub(crate) async fn authorize(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
    ) -> Result<(), RegistryError> {
        if matches!(self.auth, RegistryAuth::Anonymous) {
            self.client
                .store_auth_if_needed(reference.resolve_registry(), &self.auth)
                .await;
            return Ok(());
        }
        self.retry(|| self.client.auth(reference, &self.auth, operation))
            .await
            .map(|_| ())
    }

    /// The manifest digest of `reference`, or `None` when the registry has no such image.
    pub async fn manifest_digest(&self, reference: &str) -> Result<Option<String>, RegistryError> {
        let r = self.reference(reference)?;
        self.authorize(&r, RegistryOperation::Pull).await?;
        match self
            .retry(|| self.client.fetch_manifest_digest(&r, &self.auth))
            .await
        {
            Ok(digest) => Ok(Some(digest)),
            Err(RegistryError::Registry { reason, .. }) if is_not_found(&reason) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The raw manifest of `reference` and its digest.
    pub async fn pull_manifest(&self, reference: &str) -> Result<(Vec<u8>, String), RegistryError> {
        let r = self.reference(reference)?;
        self.authorize(&r, RegistryOperation::Pull).await?;
        let (bytes, digest) = self
            .retry(|| {
                self.client
                    .pull_manifest_raw(&r, &self.auth, MANIFEST_TYPES)
            })
            .await?;
        Ok((bytes.to_vec(), digest))
    }

    /// The bytes a pull of `reference` transfers: its configuration and compressed layers, as its
    /// manifest lists them; `None` for an index (one size per platform) or when there is no such
    /// image.
    pub async fn image_size(&self, reference: &str) -> Result<Option<u64>, RegistryError> {
        if self.manifest_digest(reference).await?.is_none() {
            return Ok(None);
        }
        let (bytes, _) = self.pull_manifest(reference).await?;
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::Invalid(format!("the manifest of {reference} is not JSON: {e}"))
        })?;
        let Some(layers) = manifest["layers"].as_array() else {
            return Ok(None);
        };
        let sizes = layers.iter().map(|l| l["size"].as_u64().unwrap_or(0));
        Ok(Some(
            manifest["config"]["size"].as_u64().unwrap_or(0) + sizes.sum::<u64>(),
        ))
    }

    /// The bytes of a blob of `reference`'s repository.
    pub async fn pull_blob(&self, reference: &str, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let r = self.reference(reference)?;
        self.authorize(&r, RegistryOperation::Pull).await?;
        self.retry(|| async {
            let mut out = Vec::new();
            self.client
                .pull_blob(&r, digest, &mut out)
                .await
                .map(|_| out)
        })
        .await
    }

    pub async fn blob_exists(&self, reference: &str, digest: &str) -> Result<bool, RegistryError> {
        let r = self.reference(reference)?;
        self.authorize(&r, RegistryOperation::Pull).await?;
        self.retry(|| self.client.blob_exists(&r, digest)).await
    }

    /// Upload a blob unless the repository has it.
    pub async fn push_blob(
        &self,
        reference: &str,
        bytes: &[u8],
        digest: &str,
    ) -> Result<BlobTransfer, RegistryError> {
        if self.blob_exists(reference, digest).await? {
            return Ok(BlobTransfer::AlreadyThere);
        }
        let r = self.reference(reference)?;
        self.authorize(&r, RegistryOperation::Push).await?;
        let data = bytes::Bytes::copy_from_slice(bytes);
        self.retry(|| self.client.push_blob(&r, data.clone(), digest))
            .await?;
        Ok(BlobTransfer::Uploaded)
    }

    /// Upload a layer unless the repository has it: from memory, or streamed from its file (read
    /// again for every attempt).
    pub async fn push_layer(
        &self,
        reference: &str,
        layer: &crate::layer::Layer,
    ) -> Result<BlobTransfer, RegistryError> {
        let path = match &layer.blob {
            crate::layer::Blob::Memory(bytes) => {
                return self.push_blob(reference, bytes, &layer.digest).await;
            }
            crate::layer::Blob::File(path) => path.clone(),
        };
        if self.blob_exists(reference, &layer.digest).await? {
            return Ok(BlobTransfer::AlreadyThere);
        }
        let r = self.reference(reference)?;
        self.authorize(&r, RegistryOperation::Push).await?;
        self.retry(|| {
            let (path, r) = (path.clone(), &r);
            async move {
                let file = tokio::fs::File::open(&path).await.map_err(|e| {
                    OciDistributionError::GenericError(Some(format!(
                        "reading {}: {e}",
                        path.display()
                    )))
                })?;
                let stream = futures_util::StreamExt::map(
                    tokio_util::io::ReaderStream::with_capacity(file, 1 << 20),
                    |chunk| {
                        chunk.map_err(|e| OciDistributionError::GenericError(Some(e.to_string())))
                    },
                );
                self.client
                    .push_blob_stream(r, stream, &layer.digest, Some(layer.size))
                    .await
            }
        })
        .await?;
        Ok(BlobTransfer::Uploaded)
    }

    /// Make a blob of `source`'s repository available in `target`'s: mount it across repositories,
    /// or, when the registry does not mount, download and upload it (through a temporary file, so a
    /// large layer is never held in memory).
    pub async fn mount_blob(
        &self,
        target: &str,
        source: &str,
        digest: &str,
    ) -> Result<BlobTransfer, RegistryError> {
        if self.blob_exists(target, digest).await? {
            return Ok(BlobTransfer::AlreadyThere);
        }
        let (t, s) = (self.reference(target)?, self.reference(source)?);
        self.authorize(&t, RegistryOperation::Push).await?;
        let mounted = self.client.mount_blob(&t, &s, digest).await.is_ok()
            && self.blob_exists(target, digest).await?;
        if mounted {
            return Ok(BlobTransfer::Mounted);
        }
        let scratch = tempfile::NamedTempFile::new().map_err(|e| RegistryError::Registry {
            registry: self.host.clone(),
            reason: format!("cannot make a temporary file to copy a layer through: {e}"),
        })?;
        let io = |e: std::io::Error| RegistryError::Registry {
            registry: self.host.clone(),
            reason: format!("copying layer {digest}: {e}"),
        };
        {
            let r = self.reference(source)?;
            self.authorize(&r, RegistryOperation::Pull).await?;
            let path = scratch.path().to_path_buf();
            self.retry(|| {
                let (path, r) = (path.clone(), &r);
                async move {
                    let generic =
                        |e: std::io::Error| OciDistributionError::GenericError(Some(e.to_string()));
                    // Each attempt starts the file again.
                    let mut out = tokio::fs::File::create(&path).await.map_err(generic)?;
                    self.client.pull_blob(r, digest, &mut out).await?;
                    tokio::io::AsyncWriteExt::flush(&mut out)
                        .await
                        .map_err(generic)
                }
            })
            .await?;
        }
        let size = std::fs::metadata(scratch.path()).map_err(io)?.len();
        let layer = crate::layer::Layer {
            blob: crate::layer::Blob::File(scratch.path().to_path_buf()),
            size,
            digest: digest.to_string(),
            diff_id: String::new(),
        };
        self.push_layer(target, &layer).await?;
        Ok(BlobTransfer::Uploaded)
    }

    /// Push a manifest (pushed last: no tag ever points at a partial image); returns its digest.
    pub async fn push_manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String, RegistryError> {
        let r = self.reference(reference)?;
        self.authorize(&r, RegistryOperation::Push).await?;
        let content_type: http::HeaderValue = media_type
            .parse()
            .map_err(|_| RegistryError::Invalid(format!("invalid media type {media_type:?}")))?;
        let data = bytes::Bytes::copy_from_slice(bytes);
        self.retry(|| {
            self.client
                .push_manifest_raw(&r, data.clone(), content_type.clone())
        })
        .await?;
        Ok(crate::layer::sha256_digest(bytes))
    }
}

fn describe(e: &OciDistributionError) -> String {
    let text = e.to_string();
    // reqwest errors carry URLs, which never hold credentials here (auth goes in headers).
    match e {
        OciDistributionError::RequestError(inner) => {
            let mut source: Option<&dyn std::error::Error> = std::error::Error::source(inner);
            let mut detail = String::new();
            while let Some(s) = source {
                detail = s.to_string();
                source = s.source();
            }
            if detail.is_empty() {
                text
            } else {
                format!("{text}: {detail}")
            }
        }
        _ => text,
    }
}

pub(crate) fn is_not_found(reason: &str) -> bool {
    let lower = reason.to_lowercase();
    lower.contains("404")
        || lower.contains("not found")
        || lower.contains("manifest unknown")
        || lower.contains("manifestunknown")
        || lower.contains("name unknown")
}

fn unauthorized(e: &OciDistributionError) -> Option<u16> {
    match e {
        OciDistributionError::UnauthorizedError { .. } => Some(401),
        OciDistributionError::AuthenticationFailure(_) => Some(401),
        OciDistributionError::ServerError { code, .. } if *code == 401 || *code == 403 => {
            Some(*code)
        }
        OciDistributionError::RequestError(r) => r
            .status()
            .map(|s| s.as_u16())
            .filter(|c| *c == 401 || *c == 403),
        _ => None,
    }
}

fn transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(r) => {
            r.is_connect()
                || r.is_timeout()
                || r.is_request()
                || r.status().is_some_and(|s| s.is_server_error())
        }
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_hosts() {
        assert!(super::is_loopback("127.0.0.1:5000"));
        assert!(super::is_loopback("localhost:5000"));
        assert!(!super::is_loopback("registry.example.org"));
        assert!(!super::is_loopback("127.example.org:443"));
    }

    #[test]
    fn credentials_are_redacted() {
        let c = super::Credentials::Basic {
            username: "u".into(),
            password: "p4ss".into(),
        };
        assert!(!format!("{c:?}").contains("p4ss"));
    }
}
