//! OCI 1.1 referrers: artifacts attached to an image in its registry (the image's SBOM, its kiln
//! contents record), found again from the image's digest.
//!
//! An artifact is pushed as an OCI image manifest with `artifactType`, the empty descriptor as
//! `config` (`application/vnd.oci.empty.v1+json`, the digest of `{}`), its data as the one layer,
//! and `subject` = the image manifest's descriptor. It is pushed by digest (no tag), after its
//! blobs. Then it is made findable:
//!
//! - a registry with the referrers API (`GET /v2/<name>/referrers/<digest>`) lists it by itself;
//! - a registry without it (CNCF Distribution 2.8, Debian's `docker-registry`, answers that route
//!   `404 page not found`, and ignores `subject` on push) gets the **referrers tag schema**: an
//!   OCI image index at the tag `sha256-<hex of the subject digest>` listing the referrers'
//!   descriptors with their `artifactType` and annotations. kiln reads that index, adds or
//!   replaces its entry (the other entries stay as they are), pushes it, and reads it back to
//!   check that its entry survived a concurrent writer (tried three times).
//!
//! Which path applies is decided by listing after the push (the API, with `oci-client`'s fallback
//! to the tag): when the new artifact is listed, nothing more is written.
//!
//! Listing and fetching use the API first, then the tag schema. Manifests and indexes are written
//! canonically (sorted keys, no spaces), so the same artifact always has the same digest and
//! attaching it again changes nothing.

use std::collections::BTreeMap;

use oci_client::{Reference, RegistryOperation};
use serde_json::{Value, json};

use crate::assemble::canonical;
use crate::client::{Registry, is_not_found};
use crate::error::RegistryError;
use crate::layer::sha256_digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// `sha256` of `{}`, the empty blob.
pub const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// The artifact (and layer) type of a CycloneDX JSON SBOM.
pub const CYCLONEDX_JSON: &str = "application/vnd.cyclonedx+json";
/// The annotation with an artifact's creation time (RFC 3339).
pub const CREATED: &str = "org.opencontainers.image.created";
/// The annotation with a layer's file name.
pub const TITLE: &str = "org.opencontainers.image.title";

/// Media types a subject may have.
const SUBJECT_TYPES: &[&str] = &[
    OCI_MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json",
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// An artifact to attach: one blob of `media_type`, typed `artifact_type`.
#[derive(Clone, Debug)]
pub struct Artifact<'a> {
    pub artifact_type: &'a str,
    pub media_type: &'a str,
    pub data: &'a [u8],
    /// The layer's file name (`org.opencontainers.image.title`), e.g. `sbom.cdx.json`.
    pub file_name: Option<&'a str>,
    /// The manifest's annotations, e.g. [`CREATED`] (use the commit time to stay deterministic).
    pub annotations: BTreeMap<String, String>,
}

/// An OCI descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    fn to_json(&self) -> Value {
        let mut v =
            json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size });
        if let Some(t) = &self.artifact_type {
            v["artifactType"] = json!(t);
        }
        if !self.annotations.is_empty() {
            v["annotations"] = json!(self.annotations);
        }
        v
    }

    fn from_json(v: &Value) -> Option<Descriptor> {
        Some(Descriptor {
            media_type: v["mediaType"].as_str()?.to_string(),
            digest: v["digest"].as_str()?.to_string(),
            size: v["size"].as_u64()?,
            artifact_type: v["artifactType"].as_str().map(String::from),
            annotations: v["annotations"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// How an attached artifact became findable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// The registry lists it (its referrers API, or a tag index that already had it).
    Listed,
    /// kiln wrote it into the referrers tag index (`sha256-<hex>`).
    TagSchema,
}

/// An artifact attached to an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// The artifact manifest (with its `artifactType` and annotations).
    pub manifest: Descriptor,
    pub subject: Descriptor,
    pub discovery: Discovery,
}

/// The referrers tag schema's tag for a subject digest: `sha256:abc…` → `sha256-abc…`.
pub fn tag_schema_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// The artifact manifest for `artifact` about `subject` (canonical bytes) and its layer's digest.
pub fn compose_manifest(subject: &Descriptor, artifact: &Artifact<'_>) -> (Vec<u8>, String) {
    let layer_digest = sha256_digest(artifact.data);
    let mut layer = json!({
        "mediaType": artifact.media_type,
        "digest": layer_digest,
        "size": artifact.data.len(),
    });
    if let Some(name) = artifact.file_name {
        layer["annotations"] = json!({ TITLE: name });
    }
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact.artifact_type,
        "config": { "mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": 2 },
        "layers": [layer],
        "subject": { "mediaType": subject.media_type, "digest": subject.digest, "size": subject.size },
    });
    if !artifact.annotations.is_empty() {
        manifest["annotations"] = json!(artifact.annotations);
    }
    (canonical(&manifest), layer_digest)
}

/// The referrers index `existing` (or a new one) with `entry` added, or replacing the entry of the
/// same digest; every other entry and field is kept. Canonical bytes.
pub fn merge_index(existing: Option<&[u8]>, entry: &Descriptor) -> Result<Vec<u8>, RegistryError> {
    let mut index = match existing {
        Some(bytes) => {
            let v: Value = serde_json::from_slice(bytes).map_err(|_| {
                RegistryError::Invalid("the referrers tag holds something that is not JSON".into())
            })?;
            if !v["manifests"].is_array() {
                return Err(RegistryError::Invalid(
                    "the referrers tag holds something other than an image index; kiln will not overwrite it"
                        .into(),
                ));
            }
            v
        }
        None => json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [] }),
    };
    let manifests = index["manifests"].as_array_mut().expect("checked above");
    manifests.retain(|m| m["digest"].as_str() != Some(entry.digest.as_str()));
    manifests.push(entry.to_json());
    Ok(canonical(&index))
}

/// The descriptors of an index's `manifests`, of `artifact_type` when given.
fn index_entries(index: &[u8], artifact_type: Option<&str>) -> Vec<Descriptor> {
    let v: Value = serde_json::from_slice(index).unwrap_or(Value::Null);
    v["manifests"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Descriptor::from_json)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)))
        .collect()
}

impl Registry {
    /// `image`'s repository at `digest`.
    fn at_digest(&self, image: &Reference, digest: &str) -> Reference {
        Reference::with_digest(
            image.registry().to_string(),
            image.repository().to_string(),
            digest.to_string(),
        )
    }

    fn at_tag(&self, image: &Reference, tag: &str) -> Reference {
        Reference::with_tag(
            image.registry().to_string(),
            image.repository().to_string(),
            tag.to_string(),
        )
    }

    /// A manifest's bytes and digest, accepting `types`; `None` when the registry has none.
    async fn pull_raw(
        &self,
        reference: &Reference,
        types: &[&str],
    ) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        self.authorize(reference, RegistryOperation::Pull).await?;
        let (client, auth) = self.oci();
        match self
            .retry(|| client.pull_manifest_raw(reference, auth, types))
            .await
        {
            Ok((bytes, digest)) => Ok(Some((bytes.to_vec(), digest))),
            Err(RegistryError::Registry { reason, .. }) if is_not_found(&reason) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The descriptor of `image`'s manifest (by tag or digest).
    pub async fn subject_descriptor(&self, image: &str) -> Result<Descriptor, RegistryError> {
        let r = self.reference(image)?;
        let (bytes, digest) = self.pull_raw(&r, SUBJECT_TYPES).await?.ok_or_else(|| {
            RegistryError::Invalid(format!(
                "{image}: the registry has no such image to attach to"
            ))
        })?;
        let media_type = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(String::from))
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        Ok(Descriptor {
            media_type,
            digest,
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        })
    }

    /// Attach `artifact` to `image` (a tag or a digest reference) and make it findable.
    pub async fn attach_artifact(
        &self,
        image: &str,
        artifact: &Artifact<'_>,
    ) -> Result<Attached, RegistryError> {
        let subject = self.subject_descriptor(image).await?;
        let (manifest, _) = compose_manifest(&subject, artifact);
        let manifest_digest = sha256_digest(&manifest);
        self.push_blob(image, b"{}", EMPTY_DIGEST).await?;
        self.push_blob(image, artifact.data, &sha256_digest(artifact.data))
            .await?;
        let r = self.reference(image)?;
        let at = self.at_digest(&r, &manifest_digest);
        self.push_manifest(&at.whole(), &manifest, OCI_MANIFEST)
            .await?;
        let entry = Descriptor {
            media_type: OCI_MANIFEST.to_string(),
            digest: manifest_digest,
            size: manifest.len() as u64,
            artifact_type: Some(artifact.artifact_type.to_string()),
            annotations: artifact.annotations.clone(),
        };
        let listed = self
            .list_referrers(image, Some(artifact.artifact_type))
            .await?;
        let discovery = if listed.iter().any(|d| d.digest == entry.digest) {
            Discovery::Listed
        } else {
            self.add_to_tag_index(&r, &subject.digest, &entry).await?;
            Discovery::TagSchema
        };
        tracing::debug!(image, digest = %entry.digest, ?discovery, "artifact attached");
        Ok(Attached {
            manifest: entry,
            subject,
            discovery,
        })
    }

    /// Read-modify-write of the referrers tag index of `subject`, checked by reading it back.
    async fn add_to_tag_index(
        &self,
        image: &Reference,
        subject: &str,
        entry: &Descriptor,
    ) -> Result<(), RegistryError> {
        let tag = self.at_tag(image, &tag_schema_tag(subject));
        for _ in 0..3 {
            let existing = self.pull_raw(&tag, &[OCI_INDEX]).await?;
            let index = merge_index(existing.as_ref().map(|(b, _)| b.as_slice()), entry)?;
            self.push_manifest(&tag.whole(), &index, OCI_INDEX).await?;
            if let Some((now, _)) = self.pull_raw(&tag, &[OCI_INDEX]).await?
                && index_entries(&now, None)
                    .iter()
                    .any(|d| d.digest == entry.digest)
            {
                return Ok(());
            }
        }
        Err(RegistryError::Registry {
            registry: self.host.clone(),
            reason: format!(
                "the referrers index {} lost kiln's entry three times (another writer?)",
                tag.whole()
            ),
        })
    }

    /// The referrers of `image`, of `artifact_type` when given: from the referrers API, or else
    /// from the referrers tag index.
    pub async fn list_referrers(
        &self,
        image: &str,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let r = self.reference(image)?;
        let subject = match r.digest() {
            Some(d) => d.to_string(),
            None => self.subject_descriptor(image).await?.digest,
        };
        let at = self.at_digest(&r, &subject);
        self.authorize(&at, RegistryOperation::Pull).await?;
        let (client, _) = self.oci();
        match self
            .retry(|| client.pull_referrers(&at, artifact_type))
            .await
        {
            Ok(index) => Ok(index
                .manifests
                .into_iter()
                .filter(|m| artifact_type.is_none_or(|t| m.artifact_type.as_deref() == Some(t)))
                .map(|m| Descriptor {
                    media_type: m.media_type,
                    digest: m.digest,
                    size: m.size.max(0) as u64,
                    artifact_type: m.artifact_type,
                    annotations: m.annotations.unwrap_or_default(),
                })
                .collect()),
            Err(RegistryError::Registry { reason, .. }) => {
                // Some registries answer the referrers route with an error other than 404.
                tracing::debug!(%reason, "the referrers API failed; reading the tag index");
                let tag = self.at_tag(&r, &tag_schema_tag(&subject));
                Ok(match self.pull_raw(&tag, &[OCI_INDEX]).await? {
                    Some((bytes, _)) => index_entries(&bytes, artifact_type),
                    None => Vec::new(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The data of `image`'s referrer of `artifact_type` (the newest by [`CREATED`], then by
    /// digest, when there are several), checked against its digest; `None` when it has none.
    pub async fn fetch_artifact(
        &self,
        image: &str,
        artifact_type: &str,
    ) -> Result<Option<(Descriptor, Vec<u8>)>, RegistryError> {
        let mut listed = self.list_referrers(image, Some(artifact_type)).await?;
        listed.sort_by(|a, b| {
            (a.annotations.get(CREATED), &a.digest).cmp(&(b.annotations.get(CREATED), &b.digest))
        });
        let Some(chosen) = listed.pop() else {
            return Ok(None);
        };
        let r = self.reference(image)?;
        let at = self.at_digest(&r, &chosen.digest);
        let (manifest, _) = self.pull_raw(&at, &[OCI_MANIFEST]).await?.ok_or_else(|| {
            RegistryError::Invalid(format!(
                "the referrer {} is listed but missing",
                chosen.digest
            ))
        })?;
        let manifest: Value = serde_json::from_slice(&manifest).map_err(|_| {
            RegistryError::Invalid(format!("the referrer {} is not JSON", chosen.digest))
        })?;
        let layer = manifest["layers"][0]["digest"].as_str().ok_or_else(|| {
            RegistryError::Invalid(format!("the referrer {} has no layer", chosen.digest))
        })?;
        let data = self.pull_blob(image, layer).await?;
        if sha256_digest(&data) != layer {
            return Err(RegistryError::Invalid(format!(
                "the blob {layer} of the referrer {} does not match its digest",
                chosen.digest
            )));
        }
        Ok(Some((chosen, data)))
    }

    /// Attach a CycloneDX JSON SBOM to `image` (`created`: the commit time, RFC 3339).
    pub async fn attach_sbom(
        &self,
        image: &str,
        sbom: &[u8],
        created: Option<&str>,
    ) -> Result<Attached, RegistryError> {
        let annotations = created
            .map(|c| BTreeMap::from([(CREATED.to_string(), c.to_string())]))
            .unwrap_or_default();
        self.attach_artifact(
            image,
            &Artifact {
                artifact_type: CYCLONEDX_JSON,
                media_type: CYCLONEDX_JSON,
                data: sbom,
                file_name: Some("sbom.cdx.json"),
                annotations,
            },
        )
        .await
    }

    /// The CycloneDX SBOM attached to `image`, if any.
    pub async fn fetch_sbom(&self, image: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        Ok(self
            .fetch_artifact(image, CYCLONEDX_JSON)
            .await?
            .map(|(_, data)| data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: "sha256:aaaa".into(),
            size: 123,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    fn entry(digest: &str, kind: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 10,
            artifact_type: Some(kind.into()),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn the_empty_descriptor_is_the_digest_of_braces() {
        assert_eq!(sha256_digest(b"{}"), EMPTY_DIGEST);
        assert_eq!(tag_schema_tag("sha256:abcd"), "sha256-abcd");
    }

    #[test]
    fn an_artifact_manifest_names_its_type_subject_and_empty_config() {
        let artifact = Artifact {
            artifact_type: CYCLONEDX_JSON,
            media_type: CYCLONEDX_JSON,
            data: b"{\"bomFormat\":\"CycloneDX\"}",
            file_name: Some("sbom.cdx.json"),
            annotations: BTreeMap::from([(CREATED.into(), "2026-01-01T00:00:00Z".into())]),
        };
        let (a, layer) = compose_manifest(&subject(), &artifact);
        let (b, _) = compose_manifest(&subject(), &artifact);
        assert_eq!(a, b, "deterministic");
        let m: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(m["artifactType"], CYCLONEDX_JSON);
        assert_eq!(m["config"]["digest"], EMPTY_DIGEST);
        assert_eq!(m["config"]["mediaType"], EMPTY_MEDIA_TYPE);
        assert_eq!(m["subject"]["digest"], "sha256:aaaa");
        assert_eq!(m["subject"]["size"], 123);
        assert_eq!(m["layers"][0]["digest"], layer.as_str());
        assert_eq!(m["layers"][0]["annotations"][TITLE], "sbom.cdx.json");
        assert!(
            String::from_utf8(a)
                .unwrap()
                .starts_with("{\"annotations\":"),
            "sorted keys"
        );
    }

    #[test]
    fn merging_into_the_tag_index_keeps_other_entries_and_replaces_its_own() {
        let first = merge_index(None, &entry("sha256:01", CYCLONEDX_JSON)).unwrap();
        let mut with_other: Value = serde_json::from_slice(&first).unwrap();
        with_other["manifests"]
            .as_array_mut()
            .unwrap()
            .push(json!({"mediaType": OCI_MANIFEST, "digest": "sha256:02", "size": 5, "artifactType": "application/spdx+json", "platform": {"os": "linux"}}));
        let bytes = serde_json::to_vec(&with_other).unwrap();
        let merged = merge_index(Some(&bytes), &entry("sha256:01", CYCLONEDX_JSON)).unwrap();
        let all = index_entries(&merged, None);
        assert_eq!(all.len(), 2, "no duplicate of sha256:01");
        let v: Value = serde_json::from_slice(&merged).unwrap();
        assert_eq!(
            v["manifests"][0]["platform"]["os"], "linux",
            "unknown fields survive"
        );
        assert_eq!(index_entries(&merged, Some(CYCLONEDX_JSON)).len(), 1);
        let image_manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert!(merge_index(Some(image_manifest), &entry("sha256:03", CYCLONEDX_JSON)).is_err());
    }

    /// Debian's `docker-registry` (CNCF Distribution) on a free loopback port, storage in a temporary
    /// folder; stopped by its PID when dropped.
    struct TestRegistry {
        child: std::process::Child,
        dir: std::path::PathBuf,
        port: u16,
    }

    impl TestRegistry {
        fn start() -> TestRegistry {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir =
                std::env::temp_dir().join(format!("kiln-referrers-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = dir.join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                    dir.display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
            let child = std::process::Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("docker-registry (CNCF Distribution) is needed: apt-get install -y docker-registry ({e})")
                });
            let registry = TestRegistry { child, dir, port };
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return registry;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            panic!("docker-registry did not listen on 127.0.0.1:{port}");
        }

        /// A plain HTTP GET: the status and the body.
        fn get(&self, path: &str, accept: &str) -> (u16, String) {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n",
                self.port
            )
            .unwrap();
            let mut response = String::new();
            s.read_to_string(&mut response).unwrap();
            let status = response[9..12].parse().unwrap();
            let body = response
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default();
            (status, body)
        }
    }

    impl Drop for TestRegistry {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Push a tiny image (one layer, a configuration, the manifest) without an engine.
    async fn push_tiny_image(registry: &Registry, image: &str) -> String {
        let layer = crate::layer::Layer::from_tar(b"kiln referrers test layer").unwrap();
        let config = canonical(&json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": { "type": "layers", "diff_ids": [layer.diff_id] },
        }));
        registry.push_layer(image, &layer).await.unwrap();
        registry
            .push_blob(image, &config, &sha256_digest(&config))
            .await
            .unwrap();
        let manifest = canonical(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(&config), "size": config.len() },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.digest, "size": layer.size }],
        }));
        registry
            .push_manifest(image, &manifest, OCI_MANIFEST)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_sbom_attached_on_distribution_is_found_through_the_referrers_tag_schema() {
        let server = TestRegistry::start();
        let host = format!("127.0.0.1:{}", server.port);
        let image = format!("{host}/kiln/demo:v1");
        let registry = Registry::for_reference(&image, None).unwrap();
        let subject = push_tiny_image(&registry, &image).await;
        let hex = subject.strip_prefix("sha256:").unwrap();

        let sbom = br#"{"bomFormat":"CycloneDX","specVersion":"1.6","version":1}"#;
        let attached = registry
            .attach_sbom(&image, sbom, Some("2026-01-01T00:00:00Z"))
            .await
            .unwrap();
        assert_eq!(attached.subject.digest, subject);

        // What the registry answers on the referrers route decides the path kiln takes.
        let (api, body) = server.get(&format!("/v2/kiln/demo/referrers/{subject}"), OCI_INDEX);
        eprintln!(
            "GET /v2/kiln/demo/referrers/{subject}: {api} {}",
            body.trim()
        );
        let (tag_status, tag_body) =
            server.get(&format!("/v2/kiln/demo/manifests/sha256-{hex}"), OCI_INDEX);
        if api == 404 {
            assert_eq!(attached.discovery, Discovery::TagSchema);
            assert_eq!(tag_status, 200, "{tag_body}");
            let index: Value = serde_json::from_str(&tag_body).unwrap();
            assert_eq!(index["mediaType"], OCI_INDEX);
            assert_eq!(
                index["manifests"][0]["digest"],
                attached.manifest.digest.as_str()
            );
            assert_eq!(index["manifests"][0]["artifactType"], CYCLONEDX_JSON);
            assert_eq!(
                index["manifests"][0]["annotations"][CREATED],
                "2026-01-01T00:00:00Z"
            );
        } else {
            assert_eq!(api, 200, "{body}");
            assert_eq!(attached.discovery, Discovery::Listed);
        }

        // The artifact manifest as pushed: typed, with the empty config and the image as subject.
        let (status, manifest) = server.get(
            &format!("/v2/kiln/demo/manifests/{}", attached.manifest.digest),
            OCI_MANIFEST,
        );
        assert_eq!(status, 200);
        let m: Value = serde_json::from_str(&manifest).unwrap();
        assert_eq!(m["artifactType"], CYCLONEDX_JSON);
        assert_eq!(m["config"]["digest"], EMPTY_DIGEST);
        assert_eq!(m["subject"]["digest"], subject.as_str());

        let listed = registry
            .list_referrers(&image, Some(CYCLONEDX_JSON))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].digest, attached.manifest.digest);
        assert_eq!(
            registry.fetch_sbom(&image).await.unwrap().as_deref(),
            Some(&sbom[..])
        );
        let by_digest = format!("{host}/kiln/demo@{subject}");
        assert_eq!(
            registry.fetch_sbom(&by_digest).await.unwrap().as_deref(),
            Some(&sbom[..])
        );

        // A second artifact of another type joins the index; the SBOM's entry stays.
        let record = br#"{"schema":"kiln.contents/v1"}"#;
        let contents = Artifact {
            artifact_type: "application/vnd.kiln.contents.v1+json",
            media_type: "application/vnd.kiln.contents.v1+json",
            data: record,
            file_name: Some("contents.json"),
            annotations: BTreeMap::new(),
        };
        registry.attach_artifact(&image, &contents).await.unwrap();
        assert_eq!(
            registry.list_referrers(&image, None).await.unwrap().len(),
            2
        );
        assert_eq!(
            registry
                .list_referrers(&image, Some(CYCLONEDX_JSON))
                .await
                .unwrap()
                .len(),
            1
        );
        let (_, got) = registry
            .fetch_artifact(&image, "application/vnd.kiln.contents.v1+json")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, record);

        // Attaching the same SBOM again changes nothing: same manifest, already listed.
        let again = registry
            .attach_sbom(&image, sbom, Some("2026-01-01T00:00:00Z"))
            .await
            .unwrap();
        assert_eq!(again.manifest.digest, attached.manifest.digest);
        assert_eq!(again.discovery, Discovery::Listed);
        assert_eq!(
            registry.list_referrers(&image, None).await.unwrap().len(),
            2
        );

        // Another client sees the same index: skopeo reads the fallback tag.
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{host}/kiln/demo:sha256-{hex}"))
            .output()
            .unwrap_or_else(|e| panic!("skopeo is needed: apt-get install -y skopeo ({e})"));
        if api == 404 {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let index: Value = serde_json::from_slice(&out.stdout).unwrap();
            let types: Vec<&str> = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|m| m["artifactType"].as_str())
                .collect();
            assert_eq!(
                types,
                [CYCLONEDX_JSON, "application/vnd.kiln.contents.v1+json"]
            );
        }

        // An image with no referrers has no SBOM.
        let other = format!("{host}/kiln/other:v1");
        push_tiny_image(&registry, &other).await;
        assert_eq!(registry.fetch_sbom(&other).await.unwrap(), None);
        assert!(
            registry
                .list_referrers(&other, None)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
