//! Archived records as sources: a record of Zenodo (or another InvenioRDM installation), of
//! Figshare, of a Dataverse installation, or a directory archived by Software Heritage, named by its DOI or its landing URL. A record version
//! never changes, so its version plays the commit's part: it names the image, and an image built
//! from it is reused before anything is downloaded.
//!
//! [`resolve`] turns the name into the record and its file list: a DOI through the resolver's
//! handle API ([`doi`]), then the landing URL's provider ([`invenio`], [`figshare`],
//! [`dataverse`], [`hydroshare`]) from its REST API; a SWHID through Software Heritage's vault ([`swh`]); a CKAN
//! dataset URL through its portal's action API ([`ckan`]). [`fetch`] downloads exactly those files, checks each against
//! the checksum the API gives, and, when the record is a single zip archive, unpacks it as
//! repo2docker does ([`unpack`]: a single folder at the top is flattened). Every request, each
//! redirect included, goes through kiln-net's guarded client ([`http`]); the fetch limits (bytes,
//! files, time) hold for the listing, the downloads and what an archive unpacks to.

mod ckan;
mod dataverse;
mod doi;
mod figshare;
mod http;
mod hydroshare;
mod invenio;
pub mod swh;
mod unpack;

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use md5::Digest;

use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};
use crate::git::FetchSettings;
use crate::source::RecordSource;
use http::Http;

/// Where records are looked up, from the environment:
/// - `KILN_DOI_RESOLVER`: the DOI resolver (default `https://doi.org/`);
/// - `KILN_INVENIO_HOSTS`: InvenioRDM installations (`host` or `host:port`, comma-separated;
///   default `zenodo.org,sandbox.zenodo.org`);
/// - `KILN_FIGSHARE_HOSTS` (default `figshare.com`) and `KILN_FIGSHARE_API` (its API, default
///   `https://api.figshare.com/v2/`);
/// - `KILN_DATAVERSE_HOSTS`: Dataverse installations (default a few large ones, see
///   [`DATAVERSE_HOSTS`]);
/// - `KILN_HYDROSHARE_HOSTS`: HydroShare installations (default `www.hydroshare.org`,
///   `hydroshare.org`);
/// - `KILN_SWH_API`: Software Heritage's API (default
///   `https://archive.softwareheritage.org/api/1/`).
#[derive(Clone, Debug)]
pub struct RecordSettings {
    pub doi_resolver: String,
    pub invenio_hosts: Vec<String>,
    pub figshare_hosts: Vec<String>,
    pub figshare_api: String,
    pub dataverse_hosts: Vec<String>,
    pub hydroshare_hosts: Vec<String>,
    pub swh_api: String,
}

/// The Dataverse installations kiln knows without `KILN_DATAVERSE_HOSTS`.
pub const DATAVERSE_HOSTS: &[&str] = &[
    "dataverse.harvard.edu",
    "demo.dataverse.org",
    "data.qdr.syr.edu",
    "borealisdata.ca",
    "dataverse.nl",
    "entrepot.recherche.data.gouv.fr",
    "dataverse.no",
];

impl Default for RecordSettings {
    fn default() -> Self {
        RecordSettings {
            doi_resolver: "https://doi.org/".into(),
            invenio_hosts: vec!["zenodo.org".into(), "sandbox.zenodo.org".into()],
            figshare_hosts: vec!["figshare.com".into()],
            figshare_api: "https://api.figshare.com/v2/".into(),
            dataverse_hosts: DATAVERSE_HOSTS.iter().map(|h| h.to_string()).collect(),
            hydroshare_hosts: vec!["www.hydroshare.org".into(), "hydroshare.org".into()],
            swh_api: "https://archive.softwareheritage.org/api/1/".into(),
        }
    }
}

impl RecordSettings {
    pub fn from_env() -> RecordSettings {
        RecordSettings::from_lookup(|name| std::env::var(name).ok())
    }

    /// The settings from `lookup` (the environment, or the service's configuration), each
    /// missing or empty one at its default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> RecordSettings {
        let mut settings = RecordSettings::default();
        let value = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let url = |name: &str| value(name).map(|v| format!("{}/", v.trim_end_matches('/')));
        let hosts = |name: &str| {
            value(name).map(|v| {
                v.split(',')
                    .map(|h| h.trim().to_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect::<Vec<_>>()
            })
        };
        if let Some(resolver) = url("KILN_DOI_RESOLVER") {
            settings.doi_resolver = resolver;
        }
        if let Some(api) = url("KILN_FIGSHARE_API") {
            settings.figshare_api = api;
        }
        if let Some(api) = url("KILN_SWH_API") {
            settings.swh_api = api;
        }
        if let Some(list) = hosts("KILN_INVENIO_HOSTS") {
            settings.invenio_hosts = list;
        }
        if let Some(list) = hosts("KILN_FIGSHARE_HOSTS") {
            settings.figshare_hosts = list;
        }
        if let Some(list) = hosts("KILN_DATAVERSE_HOSTS") {
            settings.dataverse_hosts = list;
        }
        if let Some(list) = hosts("KILN_HYDROSHARE_HOSTS") {
            settings.hydroshare_hosts = list;
        }
        settings
    }
}

/// A record, resolved: its canonical source, its files, its time.
#[derive(Clone, Debug)]
pub struct Record {
    /// [`RecordSource::Resolved`]: provider, landing URL, image slug and version.
    pub source: RecordSource,
    /// The version (a valid image tag): the record id for Zenodo, `<id>.v<n>` for Figshare,
    /// `v<major>.<minor>` for Dataverse.
    pub version: String,
    /// The landing URL: the image's source label.
    pub url: String,
    pub files: Vec<RemoteFile>,
    /// When the version was published (seconds since the epoch): the files' mtime in the image.
    pub time: i64,
    /// Where, in the unpacked archive, the record's own files are (`data/contents` of a
    /// HydroShare bag); the rest (the bag's manifests) is left out.
    pub content_root: Option<&'static str>,
}

/// One file of a record, as its API lists it.
#[derive(Clone, Debug)]
pub struct RemoteFile {
    /// Its path in the record (a folder part is kept, as in Dataverse's directory labels).
    pub key: String,
    pub url: String,
    pub size: Option<u64>,
    /// The md5 the API gives, lower-case hex, checked after the download.
    pub md5: Option<String>,
}

pub(crate) fn failed(url: &str, reason: impl Into<String>, status: u16) -> BuildError {
    BuildError::Record {
        url: url.to_string(),
        reason: reason.into(),
        status,
    }
}

/// The host of a URL as settings name it: `host`, or `host:port` with a port.
fn authority(url: &url::Url) -> Option<String> {
    let host = url.host_str()?.to_lowercase();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// An RFC 3339 time as seconds since the epoch (0 when there is none).
fn seconds(time: Option<&str>) -> i64 {
    time.and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    })
    .map_or(0, |t| t.unix_timestamp())
}

/// The record `spec` names, with its files: nothing is downloaded yet.
pub async fn resolve(
    spec: &RecordSource,
    settings: &FetchSettings,
    records: &RecordSettings,
    sink: &mut dyn EventSink,
) -> Result<Record, BuildError> {
    let http = Http::new(settings)?;
    match spec {
        RecordSource::Swhid(swhid) => {
            let record = swh::resolve(&http, swhid, records, settings.limits.timeout, sink).await?;
            return checked(record, settings);
        }
        RecordSource::Ckan(url) => {
            return checked(ckan::resolve(&http, url, sink).await?, settings);
        }
        _ => {}
    }
    let landing = match spec {
        RecordSource::Swhid(_) | RecordSource::Ckan(_) => unreachable!("resolved above"),
        RecordSource::Doi { doi, .. } => {
            sink.emit(Event::new(
                Phase::Fetching,
                format!("Resolving the DOI {doi}"),
            ));
            doi::resolve(&http, &records.doi_resolver, doi).await?
        }
        RecordSource::Url(url) | RecordSource::Resolved { url, .. } => url.clone(),
    };
    let expected = match spec {
        RecordSource::Doi { provider, .. } => provider.as_deref(),
        _ => None,
    };
    let parsed = url::Url::parse(&landing)
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http"));
    let provider = parsed.as_ref().and_then(|url| {
        [
            ("zenodo", invenio::is_record(url, records)),
            ("figshare", figshare::is_record(url, records)),
            ("dataverse", dataverse::is_record(url, records)),
            ("hydroshare", hydroshare::is_record(url, records)),
        ]
        .into_iter()
        .find_map(|(name, found)| found.then_some(name))
    });
    let what = match spec {
        RecordSource::Doi { doi, .. } => format!("the DOI {doi} lands on {landing}, which"),
        _ => landing.clone(),
    };
    let bad = |reason: String| BuildError::BadSource {
        spec: crate::source::Source::Record(spec.clone()).to_string(),
        reason,
    };
    let (Some(url), Some(provider)) = (&parsed, provider) else {
        return Err(bad(format!(
            "{what} is not a record of a repository kiln fetches from (Zenodo and InvenioRDM: {}; Figshare: {}; Dataverse: {}; HydroShare: {}; KILN_INVENIO_HOSTS, KILN_FIGSHARE_HOSTS, KILN_DATAVERSE_HOSTS and KILN_HYDROSHARE_HOSTS add others)",
            records.invenio_hosts.join(", "),
            records.figshare_hosts.join(", "),
            records.dataverse_hosts.join(", "),
            records.hydroshare_hosts.join(", ")
        )));
    };
    if let Some(expected) = expected
        && expected != provider
    {
        return Err(bad(format!(
            "{what} is a {provider} record, not a {expected} one"
        )));
    }
    let record = match provider {
        "zenodo" => invenio::resolve(&http, url, sink).await?,
        "figshare" => figshare::resolve(&http, url, records, sink).await?,
        "hydroshare" => hydroshare::resolve(&http, url, sink).await?,
        _ => dataverse::resolve(&http, url, sink).await?,
    };
    checked(record, settings)
}

/// The record, when it has files and its listing is within the fetch limits.
fn checked(record: Record, settings: &FetchSettings) -> Result<Record, BuildError> {
    if record.files.is_empty() {
        return Err(failed(
            &record.url,
            "the record has no files kiln can download",
            404,
        ));
    }
    let limits = &settings.limits;
    if record.files.len() as u64 > limits.max_files {
        return Err(BuildError::TooLarge {
            limit: limits.max_files,
            unit: "files",
            option: "--max-repo-files",
        });
    }
    let total: u64 = record.files.iter().filter_map(|f| f.size).sum();
    if total > limits.max_bytes {
        return Err(BuildError::TooLarge {
            limit: limits.max_bytes,
            unit: "bytes",
            option: "--max-repo-bytes",
        });
    }
    Ok(record)
}

/// Download the record's files into `dest` (created), each checked against its md5; a record that
/// is a single zip archive is unpacked.
pub async fn fetch(
    record: &Record,
    dest: &Path,
    settings: &FetchSettings,
    sink: &mut dyn EventSink,
) -> Result<(), BuildError> {
    let http = Http::new(settings)?;
    std::fs::create_dir_all(dest).map_err(|e| BuildError::io("creating the record's folder", e))?;
    let limits = settings.limits.clone();
    let started = Instant::now();
    let mut budget = limits.max_bytes;
    for file in &record.files {
        let path = dest.join(safe_path(&file.key).ok_or_else(|| {
            failed(
                &record.url,
                format!(
                    "the file name {:?} is not a relative path inside the record",
                    file.key
                ),
                400,
            )
        })?);
        sink.emit(Event::new(
            Phase::Fetching,
            format!(
                "Downloading {}{}",
                file.key,
                file.size
                    .map(|s| format!(" ({s} bytes)"))
                    .unwrap_or_default()
            ),
        ));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| BuildError::io("creating the record's folders", e))?;
        }
        let mut response = http.get(&file.url).await?;
        // 202: the server is still making the file (HydroShare's bags): ask again.
        while response.status() == reqwest::StatusCode::ACCEPTED {
            if started.elapsed() > limits.timeout {
                return Err(BuildError::FetchTimeout(limits.timeout));
            }
            sink.emit(Event::new(
                Phase::Fetching,
                format!("{} is being prepared by the server; asking again", file.key),
            ));
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            response = http.get(&file.url).await?;
        }
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let (reason, code) = match status {
                401 | 403 => ("it is restricted or embargoed".to_string(), 403),
                404 | 410 => ("it is gone".to_string(), 404),
                _ => (format!("the server answered {status}"), 502),
            };
            return Err(failed(
                &file.url,
                format!("cannot download {}: {reason}", file.key),
                code,
            ));
        }
        let mut out = std::fs::File::create(&path)
            .map_err(|e| BuildError::io(format!("writing {}", file.key), e))?;
        let mut md5 = md5::Md5::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed(&file.url, e.without_url().to_string(), 502))?
        {
            if chunk.len() as u64 > budget {
                return Err(BuildError::TooLarge {
                    limit: limits.max_bytes,
                    unit: "bytes",
                    option: "--max-repo-bytes",
                });
            }
            if started.elapsed() > limits.timeout {
                return Err(BuildError::FetchTimeout(limits.timeout));
            }
            budget -= chunk.len() as u64;
            md5.update(&chunk);
            out.write_all(&chunk)
                .map_err(|e| BuildError::io(format!("writing {}", file.key), e))?;
        }
        let got = hex::encode(md5.finalize());
        if let Some(want) = &file.md5
            && *want != got
        {
            return Err(failed(
                &file.url,
                format!(
                    "{} does not match the checksum the record lists (md5 {want}, downloaded {got})",
                    file.key
                ),
                502,
            ));
        }
    }
    // A single zip is unpacked, as repo2docker does; Software Heritage's vault always gives a
    // tar.gz of the directory.
    let swh =
        matches!(&record.source, RecordSource::Resolved { provider, .. } if provider == "swh");
    if let [only] = record.files.as_slice()
        && (only.key.to_lowercase().ends_with(".zip") || (swh && unpack::is_archive(&only.key)))
    {
        let archive = dest.join(safe_path(&only.key).expect("checked above"));
        sink.emit(Event::new(
            Phase::Fetching,
            format!("Unpacking {}", only.key),
        ));
        let (task_archive, task_dest) = (archive.clone(), dest.to_path_buf());
        tokio::task::spawn_blocking(move || {
            unpack::unpack(&task_archive, &task_dest, &limits, budget)
        })
        .await
        .map_err(|e| BuildError::Invalid(format!("unpacking stopped: {e}")))??;
        if let Some(root) = record.content_root {
            unpack::keep_only(dest, root)?;
        }
    }
    Ok(())
}

/// `key` as a relative path of normal components, `None` for anything else (`..`, absolute,
/// empty).
fn safe_path(key: &str) -> Option<PathBuf> {
    let path = Path::new(key);
    let ok = !key.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then(|| path.to_path_buf())
}
