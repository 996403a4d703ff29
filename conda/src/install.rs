//! Installing a lock into a staging root at the image's prefix, without a container.
//!
//! Every package is downloaded (from its channel's mirror when one is set) into the shared package
//! cache, which checks its sha256 against the lock and refuses a mismatch. Its record comes from the
//! package's own `info/index.json`, so a lock needs no repodata. rattler's installer then links the
//! packages into `STAGING/srv/conda/envs/notebook` as copies (never hard links into the cache),
//! with `/srv/conda/envs/notebook` as the prefix written into files. Afterwards, host paths are
//! stripped from `conda-meta/*.json`, `CACHEDIR.TAG` is removed, and the lock is written to
//! `conda-meta/kiln-lock.txt`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rattler::install::{Installer, LinkOptions};
use rattler_cache::package_cache::{CacheKey, PackageCache};
use rattler_conda_types::package::{
    CondaArchiveIdentifier, DistArchiveIdentifier, IndexJson, PackageFile, PathsJson,
};
use rattler_conda_types::{MatchSpec, PackageRecord, ParseStrictness, RepoDataRecord, Subdir};
use url::Url;

use crate::ENV_PREFIX;
use crate::error::CondaError;
use crate::lock::{LOCK_FILE, Lock};
use crate::settings::CondaSettings;
use crate::solve::chain;

/// An installed environment.
#[derive(Clone, Debug)]
pub struct Installed {
    /// The staging root: the environment is at `root` + [`ENV_PREFIX`].
    pub root: PathBuf,
    pub packages: usize,
    /// Time spent downloading and extracting into the package cache.
    pub fetch: Duration,
    /// Time spent linking into the staging root.
    pub link: Duration,
}

impl Installed {
    pub fn prefix(&self) -> PathBuf {
        self.root.join(ENV_PREFIX.trim_start_matches('/'))
    }
}

/// Install `lock` into `root` (an empty folder); the environment lands at `root/srv/conda/envs/notebook`.
pub async fn install(
    settings: &CondaSettings,
    lock: &Lock,
    root: &Path,
) -> Result<Installed, CondaError> {
    let prefix = root.join(ENV_PREFIX.trim_start_matches('/'));
    if prefix.exists() {
        return Err(CondaError::Invalid(format!(
            "{} exists already: kiln installs only into an empty staging root",
            prefix.display()
        )));
    }
    std::fs::create_dir_all(settings.package_cache_dir()).map_err(|e| {
        CondaError::io(
            format!(
                "creating the conda package cache {}",
                settings.package_cache_dir().display()
            ),
            e,
        )
    })?;
    let cache = PackageCache::new(settings.package_cache_dir());
    let client = settings.client()?;

    // Download and extract every package (in parallel), checking its sha256.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, package) in lock.packages.iter().enumerate() {
        let sha256 =
            rattler_digest::parse_digest_from_hex::<rattler_digest::Sha256>(&package.sha256)
                .ok_or_else(|| CondaError::Invalid(format!("{}: bad sha256", package.url)))?;
        let identifier = CondaArchiveIdentifier::try_from_url(&package.url).ok_or_else(|| {
            CondaError::Invalid(format!("{}: not a conda package file name", package.url))
        })?;
        let key = CacheKey::from(identifier).with_sha256(sha256);
        let fetch_url = settings.fetch_url(&package.url);
        settings.check_url(&fetch_url)?;
        let (cache, client, package) = (cache.clone(), client.clone(), package.clone());
        tasks.spawn(async move {
            let result = cache
                .get_or_fetch_from_url(key, fetch_url.clone(), client.into(), None, None)
                .await;
            (index, package, fetch_url, sha256, result)
        });
    }
    let mut fetched = Vec::with_capacity(lock.packages.len());
    while let Some(joined) = tasks.join_next().await {
        let (index, package, fetch_url, sha256, result) =
            joined.map_err(|e| CondaError::Install(format!("a download stopped: {e}")))?;
        let metadata = result.map_err(|e| download_error(&package.url, &package.sha256, &e))?;
        let dir = metadata.path().to_path_buf();
        check_paths(&dir, &package.name)?;
        let index_json = IndexJson::from_package_directory(&dir).map_err(|e| {
            CondaError::io(format!("reading info/index.json of {}", package.url), e)
        })?;
        let record = PackageRecord::from_index_json(index_json, None, Some(sha256), None)
            .map_err(|e| CondaError::Install(format!("{}: {e}", package.url)))?;
        if record.name.as_normalized() != package.name {
            return Err(CondaError::Install(format!(
                "{}: the package is named {}, not {}",
                package.url,
                record.name.as_normalized(),
                package.name
            )));
        }
        let identifier = DistArchiveIdentifier::try_from_url(&fetch_url).ok_or_else(|| {
            CondaError::Invalid(format!("{}: not a conda package file name", package.url))
        })?;
        fetched.push((
            index,
            RepoDataRecord {
                package_record: record,
                identifier,
                url: fetch_url,
                channel: channel_of(&package.url),
            },
        ));
    }
    fetched.sort_by_key(|(i, _)| *i);
    let records: Vec<RepoDataRecord> = fetched.into_iter().map(|(_, r)| r).collect();
    let fetch = started.elapsed();

    let started = Instant::now();
    let specs: Vec<MatchSpec> = records
        .iter()
        .filter_map(|r| {
            MatchSpec::from_str(
                r.package_record.name.as_normalized(),
                ParseStrictness::Lenient,
            )
            .ok()
        })
        .collect();
    Installer::new()
        .with_package_cache(cache)
        .with_download_client(client)
        .with_target_platform(Subdir::Linux64)
        .with_execute_link_scripts(false)
        // A package's links must stay inside the environment: one that pointed out of it could make
        // a later file land on the host while the environment is staged.
        .with_external_symlink_policy(rattler::install::ExternalSymlinkPolicy::Deny)
        .with_link_options(LinkOptions {
            allow_symbolic_links: Some(true),
            allow_hard_links: Some(false),
            allow_ref_links: Some(false),
        })
        .with_alternative_target_prefix(ENV_PREFIX)
        .with_requested_specs(specs)
        .install(&prefix, records)
        .await
        .map_err(|e| CondaError::Install(chain(&e)))?;
    let link = started.elapsed();

    clean(&prefix, lock)?;
    Ok(Installed {
        root: root.to_path_buf(),
        packages: lock.packages.len(),
        fetch,
        link,
    })
}

/// Every path a package installs must be a plain relative path: rattler joins it to the package
/// folder and to the environment as it is, so `../x` or `/etc/x` would read or write the host.
fn check_paths(dir: &Path, package: &str) -> Result<(), CondaError> {
    let paths = PathsJson::from_package_directory_with_deprecated_fallback(dir)
        .map_err(|e| CondaError::io(format!("reading info/paths.json of {package}"), e))?;
    for entry in &paths.paths {
        let path = &entry.relative_path;
        let plain = !path.as_os_str().is_empty()
            && path
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(CondaError::Escapes {
                package: package.to_string(),
                path: path.display().to_string(),
            });
        }
    }
    Ok(())
}

/// The channel part of a canonical package URL (`https://host/channel/`).
fn channel_of(url: &Url) -> Option<String> {
    let mut channel = url.clone();
    channel.path_segments_mut().ok()?.pop().pop();
    Some(format!("{}/", channel.as_str().trim_end_matches('/')))
}

fn download_error(
    url: &Url,
    expected: &str,
    error: &(dyn std::error::Error + 'static),
) -> CondaError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(rattler_package_streaming::ExtractError::HashMismatch { actual, .. }) =
            e.downcast_ref::<rattler_package_streaming::ExtractError>()
        {
            return CondaError::Sha256Mismatch {
                url: kiln_net::error::redact(url),
                expected: expected.to_string(),
                actual: actual.clone(),
            };
        }
        source = e.source();
    }
    // The cache may wrap the extraction error in a type that hides its source: read its message.
    let text = chain(error);
    if text.contains("hash mismatch")
        && let Some(actual) = text
            .split("got ")
            .nth(1)
            .map(|rest| {
                rest.chars()
                    .take_while(char::is_ascii_hexdigit)
                    .collect::<String>()
            })
            .filter(|hex| hex.len() == 64)
    {
        return CondaError::Sha256Mismatch {
            url: kiln_net::error::redact(url),
            expected: expected.to_string(),
            actual,
        };
    }
    CondaError::Download {
        url: kiln_net::error::redact(url),
        reason: chain(error),
    }
}

/// Make the staged environment independent of this host: no cache paths or mirror URLs in
/// `conda-meta`, no `CACHEDIR.TAG`, and the lock beside the records.
fn clean(prefix: &Path, lock: &Lock) -> Result<(), CondaError> {
    let tag = prefix.join("CACHEDIR.TAG");
    if tag.exists() {
        std::fs::remove_file(&tag).map_err(|e| CondaError::io("removing CACHEDIR.TAG", e))?;
    }
    let meta = prefix.join("conda-meta");
    let entries = std::fs::read_dir(&meta)
        .map_err(|e| CondaError::io(format!("reading {}", meta.display()), e))?;
    for entry in entries {
        let path = entry
            .map_err(|e| CondaError::io("reading conda-meta", e))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read(&path)
            .map_err(|e| CondaError::io(format!("reading {}", path.display()), e))?;
        let mut record: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| CondaError::Install(format!("{} is not JSON: {e}", path.display())))?;
        let Some(object) = record.as_object_mut() else {
            continue;
        };
        object.remove("extracted_package_dir");
        object.remove("package_tarball_full_path");
        if let Some(link) = object.get_mut("link").and_then(|l| l.as_object_mut()) {
            link.remove("source");
        }
        // The record's URL is the one fetched (maybe a mirror): record the lock's.
        let name = object
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_string();
        if let Some(locked) = lock.get(&name) {
            object.insert("url".into(), locked.url.to_string().into());
            if let Some(channel) = channel_of(&locked.url) {
                object.insert("channel".into(), channel.into());
            }
        }
        let bytes = serde_json::to_vec_pretty(&sorted(record)).expect("JSON values serialise");
        std::fs::write(&path, bytes)
            .map_err(|e| CondaError::io(format!("writing {}", path.display()), e))?;
    }
    std::fs::write(prefix.join(LOCK_FILE), lock.to_explicit())
        .map_err(|e| CondaError::io("writing the lock", e))?;
    Ok(())
}

/// A JSON value with every object's keys sorted (whatever serde_json's map keeps).
pub(crate) fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}
