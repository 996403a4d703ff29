//! What an image holds, recorded from the built image itself (kiln-sbom has the data; this is
//! where it meets the engine and the registry).
//!
//! - [`collect`]: run kiln-sbom's collection script in a built image (one container, no network)
//!   and parse what it prints into a [`Contents`] record.
//! - [`stamp`]: put the record and its CycloneDX SBOM into the image ([`IMAGE_PATH`],
//!   [`SBOM_PATH`]), named by the labels [`LABEL_CONTENTS`] and [`LABEL_SBOM`] with their digests:
//!   one small engine build (`FROM image` + `COPY`), or [`layer`] for a natively assembled image.
//! - [`attach`]: push both beside the image in the registry as OCI 1.1 referrers.
//! - [`find`]: read a record back, from the engine's image or beside it in the registry.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kiln_registry::{CYCLONEDX_JSON, Registry};
use kiln_sbom::{Contents, ImageMeta};

use crate::engine::{Engine, EngineBuild};
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};

pub use kiln_sbom::record::{IMAGE_PATH, MEDIA_TYPE as CONTENTS_MEDIA_TYPE};

/// Where the CycloneDX SBOM is in an image.
pub const SBOM_PATH: &str = "/opt/kiln/sbom.cdx.json";
/// The folder of both, in the image.
const FOLDER: &str = "/opt/kiln/";
/// Label with the `sha256:` digest of the record at [`IMAGE_PATH`] (its canonical JSON).
pub const LABEL_CONTENTS: &str = "io.kiln.contents.digest";
/// Label with the `sha256:` digest of the SBOM at [`SBOM_PATH`].
pub const LABEL_SBOM: &str = "io.kiln.sbom.digest";

/// The longest the collection may run, and the most it may print (a repository can fill an
/// environment with packages, but not without limit); its memory, CPU and processes are held by
/// [`collect_limits`].
const COLLECT_TIMEOUT: Duration = Duration::from_secs(120);
const COLLECT_MAX_OUTPUT: usize = 64 << 20;

/// A record with its two serialisations, as they go into the image and the registry.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub contents: Contents,
    /// The record's canonical JSON, and its digest.
    pub json: Vec<u8>,
    pub digest: String,
    /// The CycloneDX 1.6 JSON SBOM, and its digest.
    pub sbom: Vec<u8>,
    pub sbom_digest: String,
}

impl Recorded {
    pub fn new(contents: Contents) -> Result<Recorded, BuildError> {
        let json = contents.to_canonical_json();
        let digest = contents.digest();
        let sbom = kiln_sbom::to_cyclonedx(&contents).map_err(sbom_error)?;
        let sbom_digest = kiln_registry::layer::sha256_digest(&sbom);
        Ok(Recorded {
            contents,
            json,
            digest,
            sbom,
            sbom_digest,
        })
    }

    /// The same packages for another image (a new commit on the same environment): only what the
    /// builder knows changes.
    pub fn for_image(held: &Contents, meta: ImageMeta) -> Result<Recorded, BuildError> {
        let mut contents = Contents::new(meta);
        contents.os = held.os.clone();
        contents.architecture = held.architecture.clone();
        contents.deb = held.deb.clone();
        contents.python = held.python.clone();
        contents.conda = held.conda.clone();
        contents.r = held.r.clone();
        contents.julia = held.julia.clone();
        contents.npm = held.npm.clone();
        Recorded::new(contents)
    }

    /// The labels that name the files in the image.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_CONTENTS.to_string(), self.digest.clone()),
            (LABEL_SBOM.to_string(), self.sbom_digest.clone()),
        ])
    }

    /// The files in the image: (absolute path, bytes).
    pub fn files(&self) -> [(&'static str, &[u8]); 2] {
        [(IMAGE_PATH, &self.json), (SBOM_PATH, &self.sbom)]
    }
}

/// The digests of an image's record and SBOM, as its labels name them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    pub contents: String,
    pub sbom: String,
}

impl Digests {
    /// From an image's labels, when it has a record.
    pub fn from_labels(labels: &HashMap<String, String>) -> Option<Digests> {
        Some(Digests {
            contents: labels.get(LABEL_CONTENTS)?.clone(),
            sbom: labels.get(LABEL_SBOM)?.clone(),
        })
    }
}

impl Recorded {
    pub fn digests(&self) -> Digests {
        Digests {
            contents: self.digest.clone(),
            sbom: self.sbom_digest.clone(),
        }
    }
}

/// The record digests of an image in its registry, read from its configuration's labels.
pub async fn registry_digests(
    registry: &Registry,
    image: &str,
) -> Result<Option<Digests>, BuildError> {
    Ok(registry_labels(registry, image)
        .await?
        .and_then(|labels| Digests::from_labels(&labels)))
}

/// An image's labels in its registry (`None` for an index of several platforms, which has no one
/// configuration).
pub async fn registry_labels(
    registry: &Registry,
    image: &str,
) -> Result<Option<HashMap<String, String>>, BuildError> {
    let (manifest, _) = registry.pull_manifest(image).await?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest)
        .map_err(|e| BuildError::Invalid(format!("{image}: its manifest is not JSON: {e}")))?;
    let Some(config) = manifest["config"]["digest"].as_str() else {
        // An index (several platforms) has no one configuration.
        return Ok(None);
    };
    let config: serde_json::Value =
        serde_json::from_slice(&registry.pull_blob(image, config).await?).map_err(|e| {
            BuildError::Invalid(format!("{image}: its configuration is not JSON: {e}"))
        })?;
    let labels: HashMap<String, String> =
        serde_json::from_value(config["config"]["Labels"].clone()).unwrap_or_default();
    Ok(Some(labels))
}

/// A tar of `entries` (directories end in `/`; root-owned; files 0644, directories 0755).
fn tar_of(entries: &[(String, &[u8])], mtime: u64) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        if name.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
        } else {
            header.set_mode(0o644);
        }
        header.set_mtime(mtime);
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, name, *data)?;
    }
    tar.into_inner()
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn sbom_error(e: kiln_sbom::SbomError) -> BuildError {
    BuildError::Invalid(format!("recording what the image holds: {e}"))
}

/// What the collection may use: it runs the image's own interpreters, which a repository's
/// `postBuild` can change (a `.pth` file runs at every start), so it is held like a session.
fn collect_limits() -> crate::engine::Resources {
    crate::engine::Resources {
        memory: Some(1 << 30),
        nano_cpus: Some(1_000_000_000),
        pids: Some(128),
        locked_down: true,
    }
}

/// Run the collection in `image` and make its record.
pub async fn collect(
    engine: &Engine,
    image: &str,
    meta: ImageMeta,
) -> Result<Recorded, BuildError> {
    let argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        kiln_sbom::collect::default_script(),
    ];
    let output = engine
        .run_command(
            image,
            &argv,
            COLLECT_TIMEOUT,
            COLLECT_MAX_OUTPUT,
            &collect_limits(),
        )
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let contents = kiln_sbom::parse_collected(&stdout, meta).map_err(|e| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        BuildError::Invalid(format!(
            "listing the packages of {image} failed (exit status {}): {e}{}",
            output.status,
            if tail.is_empty() {
                String::new()
            } else {
                format!("\n{}", tail.join("\n"))
            }
        ))
    })?;
    Recorded::new(contents)
}

/// Put `recorded` into the engine's image `image` (re-tagged in place): one `COPY` on top of it,
/// with the labels that name the files.
pub async fn stamp(engine: &Engine, image: &str, recorded: &Recorded) -> Result<(), BuildError> {
    let dir = tempfile::Builder::new()
        .prefix("kiln-contents-")
        .tempdir()
        .map_err(|e| BuildError::io("creating a folder for the contents record", e))?;
    let context = dir.path().join("context.tar");
    let dockerfile = format!(
        "FROM {image}\nCOPY {} {} {}\n",
        file_name(IMAGE_PATH),
        file_name(SBOM_PATH),
        FOLDER
    );
    let mut entries: Vec<(String, &[u8])> = vec![("Dockerfile".into(), dockerfile.as_bytes())];
    for (path, data) in recorded.files() {
        entries.push((file_name(path).to_string(), data));
    }
    let tar = tar_of(&entries, 0)
        .map_err(|e| BuildError::io("writing the contents record's build context", e))?;
    std::fs::write(&context, tar)
        .map_err(|e| BuildError::io("writing the contents record's build context", e))?;
    // The engine's own log of this step says nothing a person needs.
    let mut quiet = |_: Event| {};
    engine
        .build(
            &context,
            &EngineBuild {
                tag: image.to_string(),
                dockerfile: "Dockerfile".into(),
                labels: recorded.labels().into_iter().collect::<HashMap<_, _>>(),
                ..Default::default()
            },
            &mut quiet,
        )
        .await?;
    Ok(())
}

/// One line saying what the record holds and how long recording it took.
pub fn report(recorded: &Recorded, took: Duration, sink: &mut dyn EventSink) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in recorded.contents.entries() {
        *counts.entry(entry.manager.as_str()).or_default() += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(m, n)| format!("{n} {m}")).collect();
    sink.emit(Event::new(
        Phase::Building,
        format!(
            "Recorded what the image holds: {} ({} bytes of CycloneDX, {}) in {:.2} s",
            if counts.is_empty() {
                "no packages".to_string()
            } else {
                counts.join(", ")
            },
            recorded.sbom.len(),
            recorded.digest,
            took.as_secs_f64()
        ),
    ));
}

/// Attach the record and its SBOM to `image` in the registry. A registry that refuses artifacts
/// does not fail the build: the record is in the image, and the failure is reported.
pub async fn attach(
    registry: &Registry,
    image: &str,
    recorded: &Recorded,
    sink: &mut dyn EventSink,
) {
    let created = recorded.contents.source.commit_time.clone();
    let annotations: BTreeMap<String, String> = created
        .iter()
        .map(|c| (kiln_registry::referrers::CREATED.to_string(), c.clone()))
        .collect();
    let artifacts = [
        kiln_registry::Artifact {
            artifact_type: CYCLONEDX_JSON,
            media_type: CYCLONEDX_JSON,
            data: &recorded.sbom,
            file_name: Some(file_name(SBOM_PATH)),
            annotations: annotations.clone(),
        },
        kiln_registry::Artifact {
            artifact_type: CONTENTS_MEDIA_TYPE,
            media_type: CONTENTS_MEDIA_TYPE,
            data: &recorded.json,
            file_name: Some(file_name(IMAGE_PATH)),
            annotations,
        },
    ];
    for artifact in &artifacts {
        match registry.attach_artifact(image, artifact).await {
            Ok(attached) => sink.emit(Event::new(
                Phase::Pushing,
                format!(
                    "Attached {} to {image} as {}{}",
                    artifact.file_name.unwrap_or(artifact.artifact_type),
                    attached.manifest.digest,
                    match attached.discovery {
                        kiln_registry::Discovery::Listed => "",
                        kiln_registry::Discovery::TagSchema => " (in the referrers tag index)",
                    }
                ),
            )),
            Err(e) => sink.emit(Event::new(
                Phase::Pushing,
                format!(
                    "Warning: the registry did not take {} beside {image} ({e}); it is in the image at {}",
                    artifact.file_name.unwrap_or(artifact.artifact_type),
                    if artifact.artifact_type == CYCLONEDX_JSON { SBOM_PATH } else { IMAGE_PATH }
                ),
            )),
        }
    }
}

/// The record attached to `image` in the registry, or `None` when it has none.
pub async fn from_registry(
    registry: &Registry,
    image: &str,
) -> Result<Option<Contents>, BuildError> {
    match registry.fetch_artifact(image, CONTENTS_MEDIA_TYPE).await? {
        Some((_, data)) => Ok(Some(Contents::from_json(&data).map_err(sbom_error)?)),
        None => Ok(None),
    }
}

/// The record inside the engine's image `image` (whose labels are `labels`), checked against its
/// label; `None` when the image has none.
async fn from_engine(
    engine: &Engine,
    image: &str,
    labels: &HashMap<String, String>,
) -> Result<Option<Contents>, BuildError> {
    let Some(label) = labels.get(LABEL_CONTENTS) else {
        return Ok(None);
    };
    let Some(bytes) = engine.read_file(image, IMAGE_PATH).await? else {
        return Err(BuildError::Invalid(format!(
            "{image} names a contents record ({LABEL_CONTENTS}) but has no {IMAGE_PATH}"
        )));
    };
    let contents = Contents::from_json(&bytes).map_err(sbom_error)?;
    if &contents.digest() != label {
        return Err(BuildError::Invalid(format!(
            "{image}: {IMAGE_PATH} does not match the digest its label {LABEL_CONTENTS} gives"
        )));
    }
    Ok(Some(contents))
}

/// Where to look for an image's record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lookup {
    /// The engine when it has the image, else the image's registry.
    #[default]
    Auto,
    Engine,
    Registry,
}

/// Where a record was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// In the engine's image, at [`IMAGE_PATH`].
    Engine,
    /// Beside the image in its registry (an OCI referrer).
    Registry,
    /// The image has no record: its packages were listed from it now (on the engine).
    ListedNow,
}

/// An image's record, where it was found and the image's size (the engine's size of its layers,
/// or the registry's compressed layers and configuration).
#[derive(Clone, Debug)]
pub struct Found {
    pub contents: Contents,
    pub place: Place,
    pub size: Option<u64>,
}

/// The record of `image`: from the engine (its file, or its packages listed now when it has
/// none) or from its registry (the referrer), as `lookup` says.
pub async fn find(
    engine: Option<&Engine>,
    registry: Option<&Registry>,
    image: &str,
    lookup: Lookup,
) -> Result<Found, BuildError> {
    let on_engine = match (engine, lookup) {
        (Some(engine), Lookup::Auto | Lookup::Engine) => match engine.inspect_image(image).await? {
            Some(info) => Some((engine, info)),
            None if lookup == Lookup::Engine => {
                return Err(BuildError::Invalid(format!(
                    "the engine has no image {image}"
                )));
            }
            None => None,
        },
        (None, Lookup::Engine) => {
            return Err(BuildError::Invalid(format!(
                "{image}: no engine to read it from"
            )));
        }
        _ => None,
    };
    if let Some((engine, info)) = on_engine {
        let size = Some(info.size.max(0) as u64);
        let labels = info.labels;
        if let Some(contents) = from_engine(engine, image, &labels).await? {
            return Ok(Found {
                contents,
                place: Place::Engine,
                size,
            });
        }
        let meta = ImageMeta {
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            source: kiln_sbom::Source {
                url: labels.get(crate::build::LABEL_SOURCE).cloned(),
                commit: labels.get(crate::build::LABEL_COMMIT).cloned(),
                content_hash: None,
                commit_time: labels.get(crate::build::LABEL_CREATED).cloned(),
            },
            image: Some(image.to_string()),
            base_image: None,
            environment_key: labels.get(crate::build::LABEL_ENVIRONMENT).cloned(),
        };
        let recorded = collect(engine, image, meta).await?;
        return Ok(Found {
            contents: recorded.contents,
            place: Place::ListedNow,
            size,
        });
    }
    let own;
    let registry = match registry {
        Some(r) => r,
        None => {
            own = Registry::for_reference(image, None)?;
            &own
        }
    };
    let size = registry.image_size(image).await?;
    match from_registry(registry, image).await? {
        Some(contents) => Ok(Found {
            contents,
            place: Place::Registry,
            size,
        }),
        None => Err(BuildError::Invalid(format!(
            "the registry has no record of what {image} holds (kiln attaches one to every image it pushes); to list its packages from its layers, pull it (kiln prewarm {image}) and ask again with --from engine"
        ))),
    }
}
