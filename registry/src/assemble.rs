//! Native image assembly: an existing image plus new layers (the repository on an environment, or a
//! conda environment's layers on the system stage) and a new configuration, pushed without a
//! container engine.
//!
//! The base image's manifest and configuration are read; the configuration gets the runtime settings
//! (environment, entrypoint, command, working directory, user, labels), the new layers' diff ids and
//! history entries; the manifest gets the new layers. Only the new layers, the configuration and the
//! manifest are uploaded (the base's layers are mounted across repositories when the target is
//! another repository), and the manifest goes last. JSON is written canonically (sorted keys, no
//! spaces), so the same inputs always give the same manifest digest.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::client::{BlobTransfer, Registry};
use crate::error::RegistryError;
use crate::layer::{Layer, sha256_digest};

/// What changes in the configuration.
#[derive(Clone, Debug, Default)]
pub struct ConfigUpdate {
    /// Variables set (or replaced) in the image's environment.
    pub env: BTreeMap<String, String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub exposed_port: Option<u16>,
    /// The image's labels (replacing the base's).
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 creation time (the commit time).
    pub created: String,
}

/// A layer to append, with what it holds (for the image history).
pub struct NewLayer<'a> {
    pub layer: &'a Layer,
    pub created_by: String,
}

/// One assembly: `base` plus `layers`, with `config`, pushed as `target`.
pub struct Assembly<'a> {
    pub base: &'a str,
    pub target: &'a str,
    pub layers: &'a [NewLayer<'a>],
    pub config: &'a ConfigUpdate,
}

/// Progress of an assembly, for events.
pub trait Progress: Send {
    fn step(&mut self, message: String);
}

impl<F: FnMut(String) + Send> Progress for F {
    fn step(&mut self, message: String) {
        self(message)
    }
}

/// The manifest and configuration an assembly would push, without pushing.
pub struct Assembled {
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
    pub config: Vec<u8>,
    pub base_layers: Vec<String>,
}

/// Build the new configuration and manifest from the base's. Empty runtime settings (entrypoint,
/// command, working directory, user, labels) keep the base's.
pub fn compose(
    base_manifest: &[u8],
    base_config: &[u8],
    new_layers: &[NewLayer<'_>],
    update: &ConfigUpdate,
) -> Result<Assembled, RegistryError> {
    let invalid = |what: &str| {
        RegistryError::Invalid(format!(
            "the base image's {what} is not valid JSON of an image"
        ))
    };
    let mut manifest: Value =
        serde_json::from_slice(base_manifest).map_err(|_| invalid("manifest"))?;
    let mut config: Value =
        serde_json::from_slice(base_config).map_err(|_| invalid("configuration"))?;

    let c = config
        .as_object_mut()
        .ok_or_else(|| invalid("configuration"))?
        .entry("config")
        .or_insert_with(|| json!({}));
    let mut env: Vec<String> = c["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for (key, value) in &update.env {
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(format!("{key}={value}"));
    }
    c["Env"] = json!(env);
    if !update.entrypoint.is_empty() {
        c["Entrypoint"] = json!(update.entrypoint);
    }
    if !update.cmd.is_empty() {
        c["Cmd"] = json!(update.cmd);
    }
    if !update.working_dir.is_empty() {
        c["WorkingDir"] = json!(update.working_dir);
    }
    if !update.user.is_empty() {
        c["User"] = json!(update.user);
    }
    if !update.labels.is_empty() {
        c["Labels"] = json!(update.labels);
    }
    if let Some(port) = update.exposed_port {
        c["ExposedPorts"] = json!({ format!("{port}/tcp"): {} });
    }
    config["created"] = json!(update.created);
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array_mut()
        .ok_or_else(|| invalid("configuration (rootfs.diff_ids)"))?;
    for new in new_layers {
        diff_ids.push(json!(new.layer.diff_id));
    }
    let history = config
        .as_object_mut()
        .ok_or_else(|| invalid("configuration"))?
        .entry("history")
        .or_insert_with(|| json!([]));
    if let Some(h) = history.as_array_mut() {
        for new in new_layers {
            h.push(json!({ "created": update.created, "created_by": new.created_by, "comment": "kiln: assembled natively" }));
        }
    }
    // Drop what describes the build of the base, not this image.
    if let Some(obj) = config.as_object_mut() {
        obj.remove("container");
        obj.remove("container_config");
    }
    let config_bytes = canonical(&config);

    let layers = manifest["layers"]
        .as_array_mut()
        .ok_or_else(|| invalid("manifest (layers)"))?;
    let base_layers: Vec<String> = layers
        .iter()
        .filter_map(|l| l["digest"].as_str().map(String::from))
        .collect();
    let layer_type = layers
        .first()
        .and_then(|l| l["mediaType"].as_str())
        .unwrap_or("application/vnd.oci.image.layer.v1.tar+gzip")
        .to_string();
    for new in new_layers {
        layers.push(
            json!({ "mediaType": layer_type, "size": new.layer.size, "digest": new.layer.digest }),
        );
    }
    manifest["config"]["digest"] = json!(sha256_digest(&config_bytes));
    manifest["config"]["size"] = json!(config_bytes.len());
    let media_type = manifest["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    Ok(Assembled {
        manifest: canonical(&manifest),
        manifest_media_type: media_type,
        config: config_bytes,
        base_layers,
    })
}

/// Assemble and push; returns the new manifest's digest.
pub async fn assemble(
    registry: &Registry,
    assembly: &Assembly<'_>,
    progress: &mut dyn Progress,
) -> Result<String, RegistryError> {
    progress.step(format!("Reading {}", assembly.base));
    let (base_manifest, _) = registry.pull_manifest(assembly.base).await?;
    let manifest: Value = serde_json::from_slice(&base_manifest).map_err(|_| {
        RegistryError::Invalid(format!("{}: the manifest is not JSON", assembly.base))
    })?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| {
            RegistryError::Invalid(format!(
                "{}: the manifest names no configuration",
                assembly.base
            ))
        })?
        .to_string();
    let base_config = registry.pull_blob(assembly.base, &config_digest).await?;
    let assembled = compose(
        &base_manifest,
        &base_config,
        assembly.layers,
        assembly.config,
    )?;

    let (mut mounted, mut uploaded) = (0, 0);
    for digest in &assembled.base_layers {
        match registry
            .mount_blob(assembly.target, assembly.base, digest)
            .await?
        {
            BlobTransfer::Mounted => mounted += 1,
            BlobTransfer::Uploaded => uploaded += 1,
            BlobTransfer::AlreadyThere => {}
        }
    }
    progress.step(format!(
        "Environment layers: {} ({mounted} mounted, {uploaded} copied, the rest already there)",
        assembled.base_layers.len()
    ));
    for new in assembly.layers {
        let sent = registry.push_layer(assembly.target, new.layer).await?;
        progress.step(format!(
            "Layer {} ({} KiB, {}): {}",
            &new.layer.digest[..19],
            new.layer.size / 1024,
            new.created_by,
            if sent == BlobTransfer::AlreadyThere {
                "already there"
            } else {
                "uploaded"
            }
        ));
    }
    let config_digest = sha256_digest(&assembled.config);
    registry
        .push_blob(assembly.target, &assembled.config, &config_digest)
        .await?;
    let digest = registry
        .push_manifest(
            assembly.target,
            &assembled.manifest,
            &assembled.manifest_media_type,
        )
        .await?;
    progress.step(format!("Pushed {} ({digest})", assembly.target));
    Ok(digest)
}

/// JSON with sorted keys and no insignificant white space. Keys are sorted here: serde_json's map
/// keeps insertion order when another crate of the build enables its `preserve_order` feature.
pub fn canonical(value: &Value) -> Vec<u8> {
    serde_json::to_vec(&sorted(value)).expect("JSON values serialise")
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_is_deterministic_and_appends() {
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:00"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":3,"digest":"sha256:aa"}]}"#;
        let config = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin","A=1"]},"rootfs":{"type":"layers","diff_ids":["sha256:bb"]},"history":[]}"#;
        let layer = Layer::from_tar(b"tar").unwrap();
        let update = ConfigUpdate {
            env: BTreeMap::from([("A".to_string(), "2".to_string())]),
            cmd: vec!["jupyter".into()],
            created: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        let layers = [NewLayer {
            layer: &layer,
            created_by: "COPY".into(),
        }];
        let a = compose(manifest, config, &layers, &update).unwrap();
        let b = compose(manifest, config, &layers, &update).unwrap();
        assert_eq!(a.manifest, b.manifest);
        let m: Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(m["layers"].as_array().unwrap().len(), 2);
        assert_eq!(
            m["layers"][1]["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        let c: Value = serde_json::from_slice(&a.config).unwrap();
        assert_eq!(c["config"]["Env"], json!(["PATH=/usr/bin", "A=2"]));
        assert_eq!(c["rootfs"]["diff_ids"][1], layer.diff_id.as_str());
        assert_eq!(m["config"]["digest"], sha256_digest(&a.config).as_str());
    }
}
