//! Hub users' own git credentials, for their private repositories.
//!
//! A logged-in user gives kiln a token for one git host (`PUT api/credentials/<host>`). It is
//! sealed at rest (XChaCha20-Poly1305 under a key derived from `KILN_CREDENTIALS_KEY`; the user,
//! host and username are bound in as associated data, so a sealed row moved to another user or
//! host does not open) and opened only to build that user's repositories on that very host:
//! [`GitCredentials::apply`] attaches it to the spec's source, whose fetch binds it to the
//! repository's origin (kiln-net sends it to no other host, not after a redirect, not to a
//! submodule elsewhere). No answer, log, event or label ever holds it; the API shows hosts and
//! usernames only.
//!
//! A build with credentials is private: it is shared only with requests of the same owner and
//! credentials (`Builds::key`), listed and shown only to its owner and the operator, and its image
//! is named after a keyed digest of the owner and the repository instead of the repository, so
//! nobody else can find, join or launch it.

use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use kiln_builder::Source;
use kiln_builder::source::Credentials;
use serde::Serialize;
use sha2::Sha256;

use crate::auth::HubUser;
use crate::config::Secret;
use crate::error::StoreError;
use crate::spec::Spec;
use crate::store::{SealedCredential, Store};

/// Most hosts one user may keep credentials for.
pub const MAX_PER_USER: usize = 20;
/// Longest username and secret accepted.
pub const MAX_USERNAME: usize = 256;
pub const MAX_SECRET: usize = 4096;
const NONCE: usize = 24;

/// Why a credential cannot be stored or used; shown to the caller as it is.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{0}")]
    Invalid(String),
    #[error("you keep credentials for {MAX_PER_USER} hosts already: remove one first")]
    TooMany,
    #[error(
        "your stored credential for {0} cannot be opened (the service's KILN_CREDENTIALS_KEY has changed): store it again"
    )]
    Unreadable(String),
    #[error("sealing failed: {0}")]
    Seal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CredentialError {
    /// The HTTP status of the refusal.
    pub fn status_code(&self) -> u16 {
        match self {
            CredentialError::Invalid(_) => 400,
            CredentialError::TooMany => 409,
            CredentialError::Unreadable(_) => 409,
            CredentialError::Seal(_) | CredentialError::Store(_) => 500,
        }
    }
}

/// A git host as credentials are bound to it: `host:port`, lower case, the port explicit (443 for
/// a bare name), so a token given for `example.org` goes only to `https://example.org` and never
/// over plain `http` (not even `http://example.org:443`). A port the user names is used with
/// either scheme (git servers inside a network often serve plain `http` on a port of their own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host(String);

impl Host {
    /// What a user typed: `example.org`, `example.org:8443`, `127.0.0.1:3000`, `[::1]:3000`.
    pub fn parse(input: &str) -> Result<Host, CredentialError> {
        let input = input.trim();
        let invalid = || {
            CredentialError::Invalid(format!(
                "{:?} is not a git host: give a host name with an optional port (example.org, example.org:8443), without a scheme, path or user",
                input.chars().take(100).collect::<String>()
            ))
        };
        if input.is_empty()
            || input.len() > 255
            || input.contains(['/', '@', '?', '#', '\\'])
            || input.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        let url = url::Url::parse(&format!("https://{input}")).map_err(|_| invalid())?;
        Host::of_url(&url).ok_or_else(invalid)
    }

    /// The host a repository URL is fetched from (`http` and `https` only: the schemes a token is
    /// sent with).
    pub fn of_url(url: &url::Url) -> Option<Host> {
        if !["https", "http"].contains(&url.scheme()) {
            return None;
        }
        let host = match url.host()? {
            url::Host::Domain(name) => name.to_ascii_lowercase(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => format!("[{ip}]"),
        };
        let port = url.port_or_known_default()?;
        if url.scheme() == "http" && port == 443 {
            return None;
        }
        Some(Host(format!("{host}:{port}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored credential as the API shows it: never the secret.
#[derive(Clone, Debug, Serialize)]
pub struct CredentialInfo {
    pub host: String,
    pub username: String,
    pub created: i64,
}

/// The users' credentials and the keys that seal them and name private images.
pub struct GitCredentials {
    store: Arc<Store>,
    seal_key: chacha20poly1305::Key,
    naming_key: Vec<u8>,
}

impl GitCredentials {
    /// Both keys are derived from the operator's key, each for its one use.
    pub fn new(operator_key: &Secret, store: Arc<Store>) -> GitCredentials {
        let derive = |purpose: &str| {
            let mut mac = keyed(operator_key.expose().as_bytes());
            mac.update(purpose.as_bytes());
            mac.finalize().into_bytes()
        };
        GitCredentials {
            store,
            seal_key: derive("kiln: seal git credentials"),
            naming_key: derive("kiln: name private images").to_vec(),
        }
    }

    fn aad(user: &str, host: &str, username: &str) -> Vec<u8> {
        [
            b"kiln git credential",
            user.as_bytes(),
            host.as_bytes(),
            username.as_bytes(),
        ]
        .join(&0u8)
    }

    /// Store `user`'s credential for `host` (replacing theirs for it).
    pub async fn put(
        &self,
        user: &str,
        host: &Host,
        username: &str,
        secret: &str,
    ) -> Result<(), CredentialError> {
        let username = username.trim();
        if username.is_empty()
            || username.len() > MAX_USERNAME
            || username.chars().any(|c| c.is_control() || c == ':')
        {
            return Err(CredentialError::Invalid(format!(
                "the username must be 1 to {MAX_USERNAME} characters, without ':' or control characters (for a token alone, most hosts take any name, e.g. \"oauth2\" or \"x-access-token\")"
            )));
        }
        if secret.is_empty() || secret.len() > MAX_SECRET || secret.chars().any(|c| c.is_control())
        {
            return Err(CredentialError::Invalid(format!(
                "the token must be 1 to {MAX_SECRET} bytes, without control characters"
            )));
        }
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).map_err(|e| CredentialError::Seal(e.to_string()))?;
        let sealed = XChaCha20Poly1305::new(&self.seal_key)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: &Self::aad(user, host.as_str(), username),
                },
            )
            .map_err(|e| CredentialError::Seal(e.to_string()))?;
        let credential = SealedCredential {
            user: user.to_string(),
            host: host.as_str().to_string(),
            username: username.to_string(),
            sealed: [nonce.as_slice(), &sealed].concat(),
            created: crate::store::now(),
        };
        if self.store.put_credential(credential, MAX_PER_USER).await? {
            Ok(())
        } else {
            Err(CredentialError::TooMany)
        }
    }

    /// The hosts `user` keeps credentials for.
    pub async fn list(&self, user: &str) -> Result<Vec<CredentialInfo>, CredentialError> {
        Ok(self
            .store
            .credentials(user, None)
            .await?
            .into_iter()
            .map(|c| CredentialInfo {
                host: c.host,
                username: c.username,
                created: c.created,
            })
            .collect())
    }

    /// Remove `user`'s credential for `host`; `false` when there was none.
    pub async fn delete(&self, user: &str, host: &Host) -> Result<bool, CredentialError> {
        Ok(self.store.delete_credential(user, host.as_str()).await?)
    }

    /// `user`'s credential for `host`, opened.
    async fn open(&self, user: &str, host: &Host) -> Result<Option<Credentials>, CredentialError> {
        let Some(stored) = self
            .store
            .credentials(user, Some(host.as_str()))
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let unreadable = || CredentialError::Unreadable(host.as_str().to_string());
        if stored.sealed.len() < NONCE {
            return Err(unreadable());
        }
        let (nonce, sealed) = stored.sealed.split_at(NONCE);
        let secret = XChaCha20Poly1305::new(&self.seal_key)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &Self::aad(user, &stored.host, &stored.username),
                },
            )
            .map_err(|_| unreadable())?;
        Ok(Some(Credentials {
            username: stored.username,
            secret: String::from_utf8(secret).map_err(|_| unreadable())?,
        }))
    }

    /// Make `spec` the caller's: a hub user's stored credential for the repository's host is
    /// attached (unless the spec carries credentials of its own), and a spec with credentials
    /// becomes private: it gets its owner and its image slug.
    pub async fn apply(
        &self,
        spec: &mut Spec,
        user: Option<&HubUser>,
    ) -> Result<(), CredentialError> {
        let Source::Git(git) = &mut spec.source else {
            return Ok(());
        };
        if git.credentials.is_none()
            && let Some(user) = user
            && let Some(host) = url::Url::parse(&git.url)
                .ok()
                .as_ref()
                .and_then(Host::of_url)
        {
            git.credentials = self.open(&user.name, &host).await?;
        }
        let Some(credentials) = &git.credentials else {
            return Ok(());
        };
        // Named after the owner when there is one (their image stays theirs while their token
        // changes), else after the credentials themselves.
        let mut mac = keyed(&self.naming_key);
        let who = match user {
            Some(user) => ["user", user.name.as_str(), ""],
            None => ["credentials", &credentials.username, &credentials.secret],
        };
        for part in who.iter().chain([&spec.repo_url.as_str()]) {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        let digest = hex::encode(mac.finalize().into_bytes());
        spec.owner = user.map(|u| u.name.clone());
        spec.image_slug = Some(format!("private-{}", &digest[..32]));
        Ok(())
    }
}

/// HMAC-SHA256 under `key`.
fn keyed(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GitCredentials { keys: <redacted> }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> (GitCredentials, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("state.db")).unwrap());
        (
            GitCredentials::new(&Secret::new("ab".repeat(32)), store),
            dir,
        )
    }

    fn user(name: &str) -> HubUser {
        HubUser {
            name: name.into(),
            groups: vec![],
        }
    }

    fn spec(url: &str) -> Spec {
        crate::spec::parse(
            "git",
            &format!(
                "{}/HEAD",
                percent_encoding::utf8_percent_encode(url, percent_encoding::NON_ALPHANUMERIC)
            ),
            &crate::spec::ProviderHosts::default(),
        )
        .unwrap()
    }

    fn attached(spec: &Spec) -> Option<Credentials> {
        match &spec.source {
            Source::Git(git) => git.credentials.clone(),
            Source::Local(_) | Source::Record(_) => None,
        }
    }

    #[test]
    fn hosts_are_normalized_with_their_port() {
        assert_eq!(
            Host::parse("Example.ORG").unwrap().as_str(),
            "example.org:443"
        );
        assert_eq!(
            Host::parse("127.0.0.1:3000").unwrap().as_str(),
            "127.0.0.1:3000"
        );
        assert_eq!(Host::parse("[::1]:3000").unwrap().as_str(), "[::1]:3000");
        for bad in [
            "",
            "https://x.org",
            "x.org/path",
            "u@x.org",
            "x .org",
            "x.org:99999",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} was taken for a host");
        }
        let http = url::Url::parse("http://example.org/r.git").unwrap();
        assert_eq!(Host::of_url(&http).unwrap().as_str(), "example.org:80");
        assert!(Host::of_url(&url::Url::parse("ssh://example.org/r").unwrap()).is_none());
    }

    #[tokio::test]
    async fn a_stored_token_is_sealed_and_goes_only_to_its_owner_and_host() {
        let (c, _dir) = credentials();
        let host = Host::parse("git.example:8443").unwrap();
        c.put("alice", &host, "alice", "s3cret-token")
            .await
            .unwrap();
        let stored = c.store.credentials("alice", None).await.unwrap();
        assert!(
            !stored[0]
                .sealed
                .windows(b"s3cret".len())
                .any(|w| w == b"s3cret"),
            "the token is stored in the clear"
        );
        let listed = serde_json::to_string(&c.list("alice").await.unwrap()).unwrap();
        assert!(listed.contains("git.example:8443") && !listed.contains("s3cret"));

        let mut own = spec("https://git.example:8443/alice/private.git");
        c.apply(&mut own, Some(&user("alice"))).await.unwrap();
        assert_eq!(attached(&own).unwrap().secret, "s3cret-token");
        assert_eq!(own.owner.as_deref(), Some("alice"));
        assert!(own.image_slug.as_deref().unwrap().starts_with("private-"));

        for (url, who) in [
            ("https://git.example:8443/alice/private.git", "bob"),
            ("https://git.example/alice/private.git", "alice"),
            ("http://git.example/alice/private.git", "alice"),
            ("https://other.example:8443/alice/private.git", "alice"),
        ] {
            let mut other = spec(url);
            c.apply(&mut other, Some(&user(who))).await.unwrap();
            assert!(
                attached(&other).is_none(),
                "{who} got alice's token for {url}"
            );
            assert!(other.owner.is_none() && other.image_slug.is_none());
        }
        assert!(c.delete("alice", &host).await.unwrap());
        assert!(!c.delete("alice", &host).await.unwrap());
    }

    #[tokio::test]
    async fn a_token_for_a_bare_host_never_goes_over_plain_http() {
        let (c, _dir) = credentials();
        let host = Host::parse("git.example").unwrap();
        assert_eq!(host.as_str(), "git.example:443");
        c.put("alice", &host, "alice", "s3cret-token")
            .await
            .unwrap();
        for url in [
            "http://git.example/alice/private.git",
            "http://git.example:443/alice/private.git",
        ] {
            let mut plain = spec(url);
            c.apply(&mut plain, Some(&user("alice"))).await.unwrap();
            assert!(attached(&plain).is_none(), "the token went to {url}");
        }
        let mut tls = spec("https://git.example/alice/private.git");
        c.apply(&mut tls, Some(&user("alice"))).await.unwrap();
        assert_eq!(attached(&tls).unwrap().secret, "s3cret-token");
    }

    #[tokio::test]
    async fn a_sealed_row_moved_to_another_user_does_not_open() {
        let (c, _dir) = credentials();
        let host = Host::parse("git.example").unwrap();
        c.put("alice", &host, "alice", "token-a").await.unwrap();
        let mut moved = c.store.credentials("alice", None).await.unwrap().remove(0);
        moved.user = "mallory".into();
        c.store.put_credential(moved, MAX_PER_USER).await.unwrap();
        let err = c.open("mallory", &host).await.unwrap_err();
        assert!(matches!(err, CredentialError::Unreadable(_)), "{err}");
        // Another operator key opens nothing either.
        let other = GitCredentials::new(&Secret::new("cd".repeat(32)), c.store.clone());
        assert!(matches!(
            other.open("alice", &host).await,
            Err(CredentialError::Unreadable(_))
        ));
    }

    #[tokio::test]
    async fn a_user_keeps_at_most_the_limit_of_hosts() {
        let (c, _dir) = credentials();
        for i in 0..MAX_PER_USER {
            let host = Host::parse(&format!("h{i}.example")).unwrap();
            c.put("alice", &host, "a", "t").await.unwrap();
        }
        let extra = Host::parse("extra.example").unwrap();
        assert!(matches!(
            c.put("alice", &extra, "a", "t").await,
            Err(CredentialError::TooMany)
        ));
        // Replacing one of them is not a new host.
        let first = Host::parse("h0.example").unwrap();
        c.put("alice", &first, "a", "t2").await.unwrap();
        c.put("bob", &extra, "b", "t").await.unwrap();
        for bad in ["", &"x".repeat(MAX_SECRET + 1), "line\nbreak"] {
            assert!(c.put("bob", &extra, "b", bad).await.is_err());
        }
        assert!(c.put("bob", &extra, "b:c", "t").await.is_err());
    }

    #[tokio::test]
    async fn private_image_names_differ_per_owner_and_hide_the_repository() {
        let (c, _dir) = credentials();
        let url = "https://u:token@git.example/team/secret-project.git";
        let mut a = spec(url);
        let mut b = spec(url);
        let mut anonymous = spec(url);
        c.apply(&mut a, Some(&user("alice"))).await.unwrap();
        c.apply(&mut b, Some(&user("bob"))).await.unwrap();
        c.apply(&mut anonymous, None).await.unwrap();
        let slugs = [&a, &b, &anonymous].map(|s| s.image_slug.clone().unwrap());
        assert!(slugs[0] != slugs[1] && slugs[1] != slugs[2] && slugs[0] != slugs[2]);
        assert!(slugs.iter().all(|s| !s.contains("secret")), "{slugs:?}");
        assert!(anonymous.owner.is_none());
    }
}
