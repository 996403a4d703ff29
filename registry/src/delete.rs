//! Removing images from a registry and listing a repository's tags: what catalogue retention
//! needs. `DELETE /v2/<name>/manifests/<digest>` removes the manifest and every tag naming it;
//! registries may refuse it (CNCF Distribution answers 405 unless deletion is enabled), which is
//! reported as the registry said it.

use oci_client::RegistryOperation;

use crate::client::{Credentials, Registry, is_loopback};
use crate::error::RegistryError;

impl Registry {
    /// Delete the manifest `digest` from the repository of `reference` (`registry/name[:tag]`).
    pub async fn delete_manifest(
        &self,
        reference: &str,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let r = self.reference(reference)?;
        if !digest.starts_with("sha256:") || digest.len() != 71 {
            return Err(RegistryError::Invalid(format!(
                "{digest:?} is not a sha256 manifest digest"
            )));
        }
        let (client, auth) = self.oci();
        let token = self
            .retry(|| client.auth(&r, auth, RegistryOperation::Push))
            .await?;
        let scheme = if is_loopback(&self.host) {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{}/v2/{}/manifests/{digest}",
            self.host,
            r.repository()
        );
        let request = reqwest::Client::new().delete(&url);
        let request = match (&token, &self.credentials) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some(Credentials::Basic { username, password })) => {
                request.basic_auth(username, Some(password))
            }
            (None, Some(Credentials::Bearer(token))) => request.bearer_auth(token),
            (None, None) => request,
        };
        let answer = request
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable {
                registry: self.host.clone(),
                attempts: 1,
                reason: e.to_string(),
            })?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        let body = answer.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        Err(RegistryError::Registry {
            registry: self.host.clone(),
            reason: format!(
                "DELETE of {}@{digest} was refused with HTTP {}: {}",
                r.repository(),
                status.as_u16(),
                body.trim()
            ),
        })
    }

    /// Delete an image and what is attached to it: its referrers (kiln's contents record and
    /// SBOM), the referrers tag index (`sha256-<hex>`) where the registry keeps one, then the
    /// image's manifest. The first refusal stops it.
    pub async fn delete_with_referrers(
        &self,
        reference: &str,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let r = self.reference(reference)?;
        let at_digest = format!("{}/{}@{digest}", self.host, r.repository());
        let referrers = self
            .list_referrers(&at_digest, None)
            .await
            .unwrap_or_default();
        for referrer in &referrers {
            self.delete_manifest(reference, &referrer.digest).await?;
        }
        let index_tag = format!(
            "{}/{}:{}",
            self.host,
            r.repository(),
            crate::referrers::tag_schema_tag(digest)
        );
        if let Some(index) = self.manifest_digest(&index_tag).await? {
            self.delete_manifest(reference, &index).await?;
        }
        self.delete_manifest(reference, digest).await
    }

    /// The tags of the repository of `reference`, as the registry lists them.
    pub async fn tags(&self, reference: &str) -> Result<Vec<String>, RegistryError> {
        let r = self.reference(reference)?;
        self.authorize(&r, RegistryOperation::Pull).await?;
        let (client, auth) = self.oci();
        match self.retry(|| client.list_tags(&r, auth, None, None)).await {
            Ok(list) => Ok(list.tags),
            Err(RegistryError::Registry { reason, .. }) if crate::client::is_not_found(&reason) => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }
}
