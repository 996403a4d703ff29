//! conda environments, natively: the lock (solved with rattler, shipped by the repository, or read
//! from an earlier image), then the environment's layers on top of the system stage (the base,
//! kiln's steps and `apt.txt`), without a container:
//! - when pushing, the system stage is pushed and the conda layers are appended to it in the
//!   registry (`kiln-registry`'s assembly);
//! - for a local build, the same image is loaded into the engine as a docker archive that carries
//!   only the new layers (the engine has the system stage's).
//!
//! The engine then builds what must run inside the image on top of it (Jupyter and the `pip:`
//! section, the repository, `postBuild`).

use std::time::Instant;

use kiln_buildpacks::BuildPlan;
use kiln_conda::{CondaSettings, Lock, PackedLayer};
use serde_json::json;

use crate::build::LABEL_CONDA_LOCK;
use crate::engine::Engine;
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};

/// Where the lock comes from, in order: `locked` (the text of a lock, e.g. from an earlier image),
/// the lock shipped by the repository, or a solve. The plan gets the lock (as an `@EXPLICIT` list)
/// and an environment key that covers it. Returns `None` for a plan without conda.
pub async fn lock_plan(
    plan: &mut BuildPlan,
    locked: Option<(&str, &str)>,
    settings: &CondaSettings,
    sink: &mut dyn EventSink,
) -> Result<Option<Lock>, BuildError> {
    let Some(layers) = (match &mut plan.build {
        kiln_buildpacks::Build::Layers(layers) => Some(layers),
        kiln_buildpacks::Build::Dockerfile(_) => None,
    }) else {
        return Ok(None);
    };
    let Some(conda) = layers.environment.conda.as_mut() else {
        return Ok(None);
    };
    let lock = match (locked, &conda.lock_file, &conda.lock) {
        (Some((from, text)), _, _) => {
            let lock = Lock::parse(from, text)?;
            sink.emit(Event::new(
                Phase::Building,
                format!(
                    "Conda: installing the lock of {from} ({} packages), without solving",
                    lock.packages.len()
                ),
            ));
            lock
        }
        (None, Some(path), Some(text)) => {
            let lock = Lock::parse(path, text)?;
            sink.emit(Event::new(
                Phase::Building,
                format!(
                    "Conda: installing the repository's lock {path} ({} packages), without solving",
                    lock.packages.len()
                ),
            ));
            lock
        }
        _ => {
            sink.emit(Event::new(
                Phase::Building,
                format!(
                    "Conda: solving {} with rattler: {} from {}",
                    conda.file,
                    conda.specs.join(", "),
                    conda.channels.join(", ")
                ),
            ));
            let started = Instant::now();
            let lock = kiln_conda::solve(
                settings,
                &kiln_conda::Request {
                    channels: conda.channels.clone(),
                    specs: conda.specs.clone(),
                },
            )
            .await?;
            sink.emit(Event::new(
                Phase::Building,
                format!(
                    "Conda: solved {} packages in {} ms",
                    lock.packages.len(),
                    started.elapsed().as_millis()
                ),
            ));
            lock
        }
    };
    conda.lock = Some(lock.to_explicit());
    if let Some(key) = &plan.environment_key {
        plan.environment_key = Some(kiln_buildpacks::key::with_conda_lock(
            key,
            &lock.to_explicit(),
        ));
    }
    Ok(Some(lock))
}

/// An environment's packed layers, as tar files in a folder removed with it.
pub struct Packed {
    pub layers: Vec<PackedLayer>,
    _dir: tempfile::TempDir,
}

/// Install `lock` into a staging root and pack its layers (uid:uid) into files, reporting progress.
pub async fn install_and_pack(
    settings: &CondaSettings,
    lock: &Lock,
    uid: u32,
    sink: &mut dyn EventSink,
) -> Result<Packed, BuildError> {
    let staging = tempfile::Builder::new()
        .prefix("kiln-conda-")
        .tempdir()
        .map_err(|e| BuildError::io("creating the conda staging folder", e))?;
    let started = Instant::now();
    let installed = kiln_conda::install(settings, lock, staging.path()).await?;
    sink.emit(Event::new(
        Phase::Building,
        format!(
            "Conda: installed {} packages into a staging root at {} (download and extract {} ms, link {} ms)",
            installed.packages,
            kiln_conda::ENV_PREFIX,
            installed.fetch.as_millis(),
            installed.link.as_millis()
        ),
    ));
    let out = tempfile::Builder::new()
        .prefix("kiln-conda-layers-")
        .tempdir()
        .map_err(|e| BuildError::io("creating the conda layers folder", e))?;
    let (root, layers_dir) = (staging.path().to_path_buf(), out.path().to_path_buf());
    let packed =
        tokio::task::spawn_blocking(move || kiln_conda::pack(&root, u64::from(uid), &layers_dir))
            .await
            .map_err(|e| BuildError::Invalid(format!("packing stopped: {e}")))??;
    // The staging root is no longer needed: the layers are in their own folder.
    drop(staging);
    for layer in &packed {
        sink.emit(Event::new(
            Phase::Building,
            format!(
                "Conda layer {}: {} files, {} KiB ({})",
                layer.name,
                layer.files,
                layer.size / 1024,
                if layer.packages.is_empty() {
                    "records and lock".to_string()
                } else {
                    layer.packages.join(" ")
                }
            ),
        ));
    }
    sink.emit(Event::new(
        Phase::Building,
        format!(
            "Conda: environment staged and packed in {} ms",
            started.elapsed().as_millis()
        ),
    ));
    Ok(Packed {
        layers: packed,
        _dir: out,
    })
}

/// gzip level of conda layers: they are large, and level 1 is several times faster than level 6 for
/// a slightly larger blob (BENCHMARKS.md). Part of the blob cache's file names.
const GZIP_LEVEL: u32 = 1;

/// Compress packed layers for a registry, in parallel. A layer's gzip depends only on its tar, so
/// blobs are kept in `cache_dir` by the tar's sha256 (its diff id): an environment whose packages
/// were packed before (the same Python, the same lock) is not compressed again.
pub fn compress_layers(
    packed: &[PackedLayer],
    cache_dir: &std::path::Path,
) -> std::io::Result<Vec<kiln_registry::Layer>> {
    std::fs::create_dir_all(cache_dir)?;
    std::thread::scope(|scope| {
        let tasks: Vec<_> = packed
            .iter()
            .map(|p| scope.spawn(move || compress_one(p, cache_dir)))
            .collect();
        tasks
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("compression stopped")))
            })
            .collect()
    })
}

fn compress_one(
    packed: &PackedLayer,
    cache_dir: &std::path::Path,
) -> std::io::Result<kiln_registry::Layer> {
    let diff_id = &packed.diff_id;
    let path = cache_dir.join(format!(
        "{}.gzip-{GZIP_LEVEL}.tar.gz",
        diff_id.trim_start_matches("sha256:")
    ));
    if let Ok(mut file) = std::fs::File::open(&path) {
        // Trust the cache only for a gzip (a cheap check of its magic bytes); its digest is read
        // again from the file.
        let mut magic = [0u8; 2];
        if std::io::Read::read_exact(&mut file, &mut magic).is_ok() && magic == [0x1f, 0x8b] {
            return kiln_registry::Layer::from_blob_file(&path, diff_id);
        }
    }
    // Written under a temporary name, then renamed: a reader never sees half a blob.
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let layer = kiln_registry::Layer::from_tar_file(&packed.path, &partial, GZIP_LEVEL)?;
    std::fs::rename(&partial, &path)?;
    Ok(kiln_registry::Layer {
        blob: kiln_registry::layer::Blob::File(path),
        ..layer
    })
}

/// What a conda layer holds, for the image history.
pub fn created_by(layer: &PackedLayer) -> String {
    format!(
        "kiln conda environment at {}: {} layer",
        kiln_conda::ENV_PREFIX,
        layer.name
    )
}

/// The creation time of the conda image: fixed, so that the same lock gives the same image.
pub const CREATED: &str = "1970-01-01T00:00:00Z";

/// Load `base` (an engine image) plus `layers` into the engine as `tag`. The archive carries only
/// the new layers: the engine has the base's, and reuses them by their diff ids.
pub async fn load_onto(
    engine: &Engine,
    base: &str,
    layers: &[PackedLayer],
    tag: &str,
) -> Result<(), BuildError> {
    let new_diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let inspect = engine
        .inspect_image(base)
        .await?
        .ok_or_else(|| BuildError::Engine(format!("{base}: the engine has no such image")))?;
    let mut diff_ids = inspect.diff_ids.clone();
    let base_count = diff_ids.len();
    diff_ids.extend(new_diff_ids.iter().cloned());
    let history: Vec<serde_json::Value> = layers
        .iter()
        .map(|p| json!({"created": CREATED, "created_by": created_by(p), "comment": "kiln: assembled natively"}))
        .collect();
    let config = json!({
        "architecture": if inspect.architecture.is_empty() { "amd64" } else { &inspect.architecture },
        "os": if inspect.os.is_empty() { "linux" } else { &inspect.os },
        "created": CREATED,
        "config": inspect.config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    let config = kiln_registry::assemble::canonical(&config);
    let config_name = format!(
        "{}.json",
        kiln_registry::layer::sha256_digest(&config).trim_start_matches("sha256:")
    );
    let layer_path = |diff_id: &str| format!("{}/layer.tar", diff_id.trim_start_matches("sha256:"));
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": diff_ids.iter().map(|d| layer_path(d)).collect::<Vec<_>>(),
    }]);
    // The archive is written to a file and streamed to the engine: layers are never held in memory.
    let io = |e| BuildError::io("writing the image archive", e);
    let file = tempfile::NamedTempFile::new().map_err(io)?;
    let mut archive = tar::Builder::new(std::io::BufWriter::new(file.reopen().map_err(io)?));
    let mut add = |path: &str, size: u64, data: &mut dyn std::io::Read| {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(size);
        header.set_entry_type(tar::EntryType::Regular);
        archive.append_data(&mut header, path, data)
    };
    let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
    add(
        "manifest.json",
        manifest.len() as u64,
        &mut manifest.as_slice(),
    )
    .map_err(io)?;
    add(&config_name, config.len() as u64, &mut config.as_slice()).map_err(io)?;
    for (packed, diff_id) in layers.iter().zip(&new_diff_ids) {
        let mut tar = std::io::BufReader::new(std::fs::File::open(&packed.path).map_err(io)?);
        add(&layer_path(diff_id), packed.size, &mut tar).map_err(io)?;
    }
    let mut written = archive.into_inner().map_err(io)?;
    std::io::Write::flush(&mut written).map_err(io)?;
    drop(written);
    tracing::debug!(
        "loading {tag}: {} base layers reused, {} new",
        base_count,
        layers.len()
    );
    engine.load(file.path(), tag).await
}

/// The lock stored in an image (the file its label names), read through the engine; the image is
/// pulled when the engine lacks it.
pub async fn lock_of_image(engine: &Engine, image: &str) -> Result<String, BuildError> {
    let labels = match engine.image_labels(image).await? {
        Some(labels) => labels,
        None => {
            engine.pull(image, None).await.map_err(|e| {
                BuildError::Invalid(format!(
                    "--locked {image}: the engine does not have it and cannot pull it: {e}"
                ))
            })?;
            engine.image_labels(image).await?.unwrap_or_default()
        }
    };
    let path = labels.get(LABEL_CONDA_LOCK).ok_or_else(|| {
        BuildError::Invalid(format!(
            "--locked {image}: the image has no conda lock (no {LABEL_CONDA_LOCK} label); only images kiln built from a conda environment have one"
        ))
    })?;
    let bytes = engine
        .read_file(image, path)
        .await?
        .ok_or_else(|| BuildError::Invalid(format!("{image}: {path} is missing")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| BuildError::Invalid(format!("{image}: {path} is not text")))?;
    if text.trim().is_empty() {
        return Err(BuildError::Invalid(format!("{image}: {path} is empty")));
    }
    Ok(text)
}

/// Where glibc lives in a Debian or Ubuntu image (merged /usr: a regular file, not a link).
const LIBC_PATHS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib64/libc.so.6",
];

/// The target's virtual packages, read from the base image when the engine has it: its glibc
/// version (from the `release version X.Y` string of its libc) replaces the configured `__glibc`.
/// `KILN_CONDA_VIRTUAL_PACKAGES`, when set, wins. Returns a note for the log.
pub async fn target_virtual_packages(
    engine: &Engine,
    base_image: &str,
    settings: &mut CondaSettings,
) -> Result<String, BuildError> {
    if std::env::var_os("KILN_CONDA_VIRTUAL_PACKAGES").is_some() {
        return Ok("virtual packages from KILN_CONDA_VIRTUAL_PACKAGES".into());
    }
    let Ok(Some(inspect)) = engine.inspect_image(base_image).await else {
        return Ok(format!(
            "the engine does not have {base_image} yet: virtual packages of kiln's default base (glibc 2.36)"
        ));
    };
    let arch = inspect.architecture.clone();
    if !arch.is_empty() && arch != "amd64" {
        return Err(BuildError::Invalid(format!(
            "{base_image} is a {arch} image; kiln's conda environments are built for linux-64 (amd64) only"
        )));
    }
    let mut glibc = None;
    for path in LIBC_PATHS {
        if let Ok(Some(bytes)) = engine.read_file(base_image, path).await {
            glibc = glibc_version(&bytes);
            if glibc.is_some() {
                break;
            }
        }
    }
    let Some(version) = glibc else {
        return Ok(format!(
            "no glibc found in {base_image}: virtual packages of kiln's default base (glibc 2.36)"
        ));
    };
    settings
        .virtual_packages
        .retain(|(name, _, _)| name != "__glibc");
    settings
        .virtual_packages
        .insert(0, ("__glibc".into(), version.clone(), "0".into()));
    Ok(format!(
        "virtual packages of {base_image}: __glibc {version}, linux-64"
    ))
}

/// `2.36` from the `release version 2.36` string a glibc carries.
fn glibc_version(libc: &[u8]) -> Option<String> {
    let needle = b"release version ";
    let at = libc.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let version: String = libc[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .map(|b| *b as char)
        .collect();
    let version = version.trim_end_matches('.').to_string();
    version.contains('.').then_some(version)
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_version_from_libc() {
        let libc =
            b"\0GNU C Library (Debian GLIBC 2.36-9+deb12u14) stable release version 2.36.\n\0";
        assert_eq!(super::glibc_version(libc).as_deref(), Some("2.36"));
        assert_eq!(super::glibc_version(b"nothing"), None);
    }
}
