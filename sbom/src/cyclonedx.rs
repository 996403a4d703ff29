//! A CycloneDX 1.6 JSON SBOM from a contents record.
//!
//! The types below are the subset of the 1.6 schema that kiln writes. `cyclonedx-bom` 0.8.1
//! (CycloneDX's own Rust crate, the latest release) writes 1.3 to 1.5 only, and `serde-cyclonedx`
//! 0.10 (types generated from the schema at build time) is stringly typed and needs its users to
//! repair its serde features; a test validates what these types write against the official 1.6
//! schema (`tests/cyclonedx_schema.rs`).
//!
//! - `serialNumber` is a UUID v5 of the record's digest (kiln's namespace), so the same record
//!   always gives the same SBOM bytes;
//! - `metadata.timestamp` is the commit time (omitted without one), `metadata.tools` is kiln,
//!   `metadata.component` the image (type `container`) with its source, commit, environment key
//!   and the record digest as properties and the repository as a `vcs` external reference;
//! - one component per package, with its purl ([`crate::purl`]) and `kiln:*` properties
//!   (`kiln:environment`, `kiln:deb:source`, `kiln:python:installer`…); the operating system
//!   (`operating-system`) and the base image (`container`, its digest as a SHA-256 hash);
//! - `dependencies` says that the image holds every component.
//!
//! The JSON is canonical (RFC 8785).

use serde::Serialize;

use crate::error::SbomError;
use crate::purl;
use crate::record::{Contents, deb_key};

pub const SPEC_VERSION: &str = "1.6";
pub const MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";
const SCHEMA_URL: &str = "http://cyclonedx.org/schema/bom-1.6.schema.json";
/// The namespace of kiln's SBOM serial numbers (a UUID v5 of a URL of kiln's).
const SERIAL_NAMESPACE: &str = "https://kiln.invalid/sbom/cyclonedx";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bom {
    #[serde(rename = "$schema")]
    schema: &'static str,
    bom_format: &'static str,
    spec_version: &'static str,
    serial_number: String,
    version: u32,
    metadata: Metadata,
    components: Vec<Component>,
    dependencies: Vec<Dependency>,
}

#[derive(Serialize)]
struct Metadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<String>,
    tools: Tools,
    component: Component,
}

#[derive(Serialize)]
struct Tools {
    components: Vec<Component>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Component {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "bom-ref", skip_serializing_if = "Option::is_none")]
    bom_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purl: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<Hash>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_references: Vec<ExternalReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    properties: Vec<Property>,
}

#[derive(Serialize)]
struct Hash {
    alg: &'static str,
    content: String,
}

#[derive(Serialize)]
struct ExternalReference {
    #[serde(rename = "type")]
    kind: &'static str,
    url: String,
}

#[derive(Serialize)]
struct Property {
    name: String,
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Dependency {
    #[serde(rename = "ref")]
    reference: String,
    depends_on: Vec<String>,
}

fn prop(name: &str, value: impl Into<String>) -> Property {
    Property {
        name: name.to_string(),
        value: value.into(),
    }
}

fn props(pairs: &[(&str, Option<&str>)]) -> Vec<Property> {
    pairs
        .iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| prop(k, v)))
        .collect()
}

fn sha256_hash(hex: &str) -> Option<Hash> {
    let hex = hex
        .strip_prefix("sha256:")
        .unwrap_or(hex)
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(Hash {
        alg: "SHA-256",
        content: hex,
    })
}

/// The serial number of the SBOM of a record with `digest`: `urn:uuid:` and a UUID v5.
pub fn serial_number(digest: &str) -> String {
    let namespace = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, SERIAL_NAMESPACE.as_bytes());
    format!(
        "urn:uuid:{}",
        uuid::Uuid::new_v5(&namespace, digest.as_bytes())
    )
}

/// The CycloneDX 1.6 JSON SBOM of `record`, canonical bytes.
pub fn to_cyclonedx(record: &Contents) -> Result<Vec<u8>, SbomError> {
    let mut record = record.clone();
    record.normalise();
    let digest = record.digest();
    let timestamp = record
        .source
        .commit_time
        .as_deref()
        .map(|t| {
            t.parse::<jiff::Timestamp>()
                .map(|ts| ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .map_err(|e| {
                    SbomError::Invalid(format!(
                        "the commit time {t:?} is not an RFC 3339 time: {e}"
                    ))
                })
        })
        .transpose()?;

    let mut components = Vec::new();
    if let Some(os) = &record.os {
        components.push(Component {
            kind: "operating-system",
            bom_ref: Some("kiln:os".into()),
            name: os.id.clone(),
            version: os.version_id.clone(),
            description: os.pretty_name.clone(),
            ..Default::default()
        });
    }
    if let Some(base) = &record.base_image {
        components.push(Component {
            kind: "container",
            bom_ref: Some("kiln:base-image".into()),
            name: purl::split_reference(&base.name).0.to_string(),
            version: purl::split_reference(&base.name).1.map(String::from),
            description: Some("the base image".into()),
            purl: purl::oci(base),
            hashes: base
                .digest
                .as_deref()
                .and_then(sha256_hash)
                .into_iter()
                .collect(),
            properties: props(&[
                ("kiln:base-image", Some(&base.name)),
                ("kiln:digest", base.digest.as_deref()),
            ]),
            ..Default::default()
        });
    }
    let native = record.architecture.clone().unwrap_or_default();
    for p in &record.deb {
        components.push(Component {
            kind: "library",
            bom_ref: Some(format!("kiln:deb::{}", deb_key(p, &native))),
            name: p.name.clone(),
            version: Some(p.version.clone()),
            purl: purl::deb(p, record.os.as_ref()),
            properties: props(&[
                ("kiln:deb:architecture", Some(&p.architecture)),
                ("kiln:deb:source", Some(&p.source)),
                ("kiln:deb:source-version", p.source_version.as_deref()),
            ]),
            ..Default::default()
        });
    }
    for env in &record.conda {
        for p in &env.packages {
            components.push(Component {
                kind: "library",
                bom_ref: Some(format!("kiln:conda:{}:{}", env.prefix, p.name)),
                name: p.name.clone(),
                version: Some(p.version.clone()),
                purl: purl::conda(p),
                hashes: p
                    .sha256
                    .as_deref()
                    .and_then(sha256_hash)
                    .into_iter()
                    .collect(),
                external_references: p
                    .url
                    .iter()
                    .map(|u| ExternalReference {
                        kind: "distribution",
                        url: u.clone(),
                    })
                    .collect(),
                properties: props(&[
                    ("kiln:environment", Some(&env.prefix)),
                    ("kiln:conda:build", Some(&p.build)),
                    ("kiln:conda:channel", p.channel.as_deref()),
                ]),
                ..Default::default()
            });
        }
    }
    for env in &record.python {
        for p in &env.packages {
            let du = p.direct_url.as_ref();
            components.push(Component {
                kind: "library",
                bom_ref: Some(format!("kiln:python:{}:{}", env.prefix, p.name)),
                name: p.name.clone(),
                version: Some(p.version.clone()),
                purl: purl::python(p),
                hashes: p
                    .hashes
                    .get("sha256")
                    .and_then(|h| sha256_hash(h))
                    .into_iter()
                    .collect(),
                external_references: du
                    .filter(|d| d.kind == "vcs")
                    .map(|d| ExternalReference {
                        kind: "vcs",
                        url: d.url.clone(),
                    })
                    .into_iter()
                    .collect(),
                properties: props(&[
                    ("kiln:environment", Some(&env.prefix)),
                    ("kiln:python:installer", p.installer.as_deref()),
                    ("kiln:python:requested", p.requested.then_some("true")),
                    ("kiln:python:direct-url", du.map(|d| d.url.as_str())),
                    (
                        "kiln:python:commit",
                        du.and_then(|d| d.commit_id.as_deref()),
                    ),
                    (
                        "kiln:python:editable",
                        du.filter(|d| d.editable).map(|_| "true"),
                    ),
                ]),
                ..Default::default()
            });
        }
    }
    if let Some(r) = &record.r {
        for p in &r.packages {
            let remote = p.remote.as_ref();
            components.push(Component {
                kind: "library",
                bom_ref: Some(format!("kiln:r::{}", p.name)),
                name: p.name.clone(),
                version: Some(p.version.clone()),
                purl: purl::r(p),
                properties: props(&[
                    ("kiln:r:library", Some(&p.library)),
                    ("kiln:r:repository", p.repository.as_deref()),
                    ("kiln:r:priority", p.priority.as_deref()),
                    ("kiln:r:remote-type", remote.map(|r| r.kind.as_str())),
                    ("kiln:r:remote-sha", remote.and_then(|r| r.sha.as_deref())),
                ]),
                ..Default::default()
            });
        }
    }
    for env in &record.julia {
        for p in &env.packages {
            components.push(Component {
                kind: "library",
                bom_ref: Some(format!("kiln:julia:{}:{}", env.manifest, p.uuid)),
                name: p.name.clone(),
                version: p.version.clone(),
                purl: purl::julia(p),
                properties: props(&[
                    ("kiln:environment", Some(&env.manifest)),
                    ("kiln:julia:uuid", Some(&p.uuid)),
                    ("kiln:julia:git-tree-sha1", p.git_tree_sha1.as_deref()),
                ]),
                ..Default::default()
            });
        }
    }
    for p in &record.npm {
        components.push(Component {
            kind: "library",
            bom_ref: Some(format!("kiln:npm::{}", p.name)),
            name: p.name.clone(),
            version: Some(p.version.clone()),
            purl: purl::npm(p),
            ..Default::default()
        });
    }

    let image_name = record
        .image
        .clone()
        .or_else(|| record.source.url.clone())
        .unwrap_or_else(|| "kiln image".to_string());
    let (image_repository, image_tag) = purl::split_reference(&image_name);
    let image_ref = "kiln:image".to_string();
    let mut image_props = props(&[
        ("kiln:source:url", record.source.url.as_deref()),
        ("kiln:source:commit", record.source.commit.as_deref()),
        (
            "kiln:source:content-hash",
            record.source.content_hash.as_deref(),
        ),
        ("kiln:environment-key", record.environment_key.as_deref()),
        ("kiln:architecture", record.architecture.as_deref()),
    ]);
    image_props.push(prop("kiln:contents-digest", digest.clone()));
    let image = Component {
        kind: "container",
        bom_ref: Some(image_ref.clone()),
        name: image_repository.to_string(),
        version: image_tag
            .map(String::from)
            .or_else(|| record.source.commit.clone()),
        external_references: record
            .source
            .url
            .as_deref()
            .filter(|u| url::Url::parse(u).is_ok_and(|u| u.has_host()))
            .map(|u| ExternalReference {
                kind: "vcs",
                url: u.to_string(),
            })
            .into_iter()
            .collect(),
        properties: image_props,
        ..Default::default()
    };
    let dependencies = vec![Dependency {
        reference: image_ref,
        depends_on: components
            .iter()
            .filter_map(|c| c.bom_ref.clone())
            .collect(),
    }];
    let bom = Bom {
        schema: SCHEMA_URL,
        bom_format: "CycloneDX",
        spec_version: SPEC_VERSION,
        serial_number: serial_number(&digest),
        version: 1,
        metadata: Metadata {
            timestamp,
            tools: Tools {
                components: vec![Component {
                    kind: "application",
                    name: "kiln".into(),
                    version: Some(record.kiln_version.clone()),
                    ..Default::default()
                }],
            },
            component: image,
        },
        components,
        dependencies,
    };
    let value = serde_json::to_value(&bom).expect("an SBOM serialises");
    Ok(serde_json_canonicalizer::to_vec(&value).expect("a JSON value canonicalises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers_are_uuid_v5_of_the_digest() {
        let a = serial_number("sha256:00");
        assert_eq!(a, serial_number("sha256:00"));
        assert_ne!(a, serial_number("sha256:01"));
        let uuid = a.strip_prefix("urn:uuid:").unwrap();
        let parsed = uuid::Uuid::parse_str(uuid).unwrap();
        assert_eq!(parsed.get_version_num(), 5);
        assert_eq!(uuid, uuid.to_lowercase());
    }

    #[test]
    fn a_bad_commit_time_is_refused() {
        let mut record = Contents::default();
        record.source.commit_time = Some("yesterday".into());
        let e = to_cyclonedx(&record).unwrap_err().to_string();
        assert!(e.contains("RFC 3339"), "{e}");
        record.source.commit_time = Some("2026-01-02T03:04:05+01:00".into());
        let bom: serde_json::Value =
            serde_json::from_slice(&to_cyclonedx(&record).unwrap()).unwrap();
        assert_eq!(bom["metadata"]["timestamp"], "2026-01-02T02:04:05Z");
    }
}
