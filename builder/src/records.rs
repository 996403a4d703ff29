//! Archived records as sources: a Zenodo record (or one of another InvenioRDM installation),
//! named by its DOI or its landing URL. A record version never changes, so its id plays the
//! commit's part: it names the image, and an image built from it is reused before anything is
//! downloaded.
//!
//! `resolve` turns the name into the record and its file list (the DOI through the resolver's
//! handle API, then the record's metadata and files from the installation's REST API); `fetch`
//! downloads exactly those files, checks each against the checksum the API gives, and, when the
//! record is a single zip archive, unpacks it as repo2docker does (a single folder at the top is
//! flattened). Every request, each redirect included, goes through kiln-net's guarded client; the
//! fetch limits (bytes, files, time) hold for the downloads and for what an archive unpacks to.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use md5::Digest;
use serde::Deserialize;

use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};
use crate::git::FetchSettings;
use crate::source::RecordSource;

/// Where records are looked up: `KILN_DOI_RESOLVER` (default `https://doi.org/`) and
/// `KILN_INVENIO_HOSTS` (the InvenioRDM installations kiln fetches records from, `host` or
/// `host:port`, comma-separated; default `zenodo.org,sandbox.zenodo.org`).
#[derive(Clone, Debug)]
pub struct RecordSettings {
    pub doi_resolver: String,
    pub invenio_hosts: Vec<String>,
}

impl Default for RecordSettings {
    fn default() -> Self {
        RecordSettings {
            doi_resolver: "https://doi.org/".into(),
            invenio_hosts: vec!["zenodo.org".into(), "sandbox.zenodo.org".into()],
        }
    }
}

impl RecordSettings {
    pub fn from_env() -> RecordSettings {
        let mut settings = RecordSettings::default();
        if let Ok(resolver) = std::env::var("KILN_DOI_RESOLVER")
            && !resolver.trim().is_empty()
        {
            let resolver = resolver.trim();
            settings.doi_resolver = format!("{}/", resolver.trim_end_matches('/'));
        }
        if let Ok(hosts) = std::env::var("KILN_INVENIO_HOSTS")
            && !hosts.trim().is_empty()
        {
            settings.invenio_hosts = hosts
                .split(',')
                .map(|h| h.trim().to_lowercase())
                .filter(|h| !h.is_empty())
                .collect();
        }
        settings
    }
}

/// A record, resolved: its canonical source (landing URL and id), its files, its time.
#[derive(Clone, Debug)]
pub struct Record {
    pub source: RecordSource,
    pub id: String,
    pub url: String,
    pub files: Vec<RemoteFile>,
    /// When the record was published (seconds since the epoch): the files' mtime in the image.
    pub time: i64,
}

/// One file of a record, as its API lists it.
#[derive(Clone, Debug)]
pub struct RemoteFile {
    pub key: String,
    pub url: String,
    pub size: Option<u64>,
    /// The md5 the API gives (`md5:<hex>`), checked after the download.
    pub md5: Option<String>,
}

const RETRIES: u32 = 3;

/// What a DOI's path segments keep unencoded in the handle API's URL.
const DOI_PART: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_');

fn failed(url: &str, reason: impl Into<String>, status: u16) -> BuildError {
    BuildError::Record {
        url: url.to_string(),
        reason: reason.into(),
        status,
    }
}

/// The guarded client and the policy it enforces (a URL with an IP literal is checked here: it
/// reaches no resolver).
struct Http {
    client: reqwest::Client,
    policy: kiln_net::Policy,
}

impl Http {
    fn new(settings: &FetchSettings) -> Result<Http, BuildError> {
        let options = kiln_net::http::Options {
            timeout: Some(settings.limits.timeout),
            ..kiln_net::http::Options::default()
        };
        let client = kiln_net::http::guarded_client(&settings.policy, &options)
            .map_err(|e| BuildError::Invalid(format!("cannot make the HTTP client: {e}")))?;
        Ok(Http {
            client,
            policy: settings.policy.clone(),
        })
    }

    /// GET `url`; a 5xx answer or a broken connection is tried again (three times in all), a
    /// refusal by the address policy is not.
    async fn get(&self, url: &str) -> Result<reqwest::Response, BuildError> {
        let parsed =
            url::Url::parse(url).map_err(|e| failed(url, format!("not a valid URL: {e}"), 400))?;
        kiln_net::http::check(&self.policy, &parsed).map_err(|e| BuildError::Refused {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let answer = self
                .client
                .get(parsed.clone())
                .header("Accept", "application/json")
                .send()
                .await;
            match answer {
                Ok(response) if response.status().is_server_error() && attempt < RETRIES => {}
                Ok(response) if response.status().is_server_error() => {
                    return Err(failed(
                        url,
                        format!("the server answered {} {RETRIES} times", response.status()),
                        502,
                    ));
                }
                Ok(response) => return Ok(response),
                Err(e) => {
                    if let Some(refusal) = kiln_net::http::guard_error(&e) {
                        return Err(BuildError::Refused {
                            url: url.to_string(),
                            reason: refusal.to_string(),
                        });
                    }
                    if attempt >= RETRIES {
                        return Err(failed(url, e.without_url().to_string(), 502));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))).await;
        }
    }

    /// GET `url` as JSON of at most 4 MiB; `what` names it in errors.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<T, BuildError> {
        let mut response = self.get(url).await?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            404 => return Err(failed(url, format!("{what} does not exist (404)"), 404)),
            410 => {
                return Err(failed(
                    url,
                    format!("{what} was withdrawn or deleted (410 Gone)"),
                    404,
                ));
            }
            401 | 403 => {
                return Err(failed(
                    url,
                    format!(
                        "{what} is restricted or embargoed ({status}): kiln fetches open records only"
                    ),
                    403,
                ));
            }
            _ => {
                return Err(failed(
                    url,
                    format!("{what}: the server answered {status}"),
                    502,
                ));
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed(url, e.without_url().to_string(), 502))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > 4 << 20 {
                return Err(failed(url, format!("{what} is larger than 4 MiB"), 502));
            }
        }
        serde_json::from_slice(&body).map_err(|e| {
            failed(
                url,
                format!("{what} is not what the API documents: {e}"),
                502,
            )
        })
    }
}

/// The record `spec` names, with its files: nothing is downloaded yet.
pub async fn resolve(
    spec: &RecordSource,
    settings: &FetchSettings,
    records: &RecordSettings,
    sink: &mut dyn EventSink,
) -> Result<Record, BuildError> {
    let http = Http::new(settings)?;
    let landing = match spec {
        RecordSource::Doi { doi, .. } => {
            sink.emit(Event::new(
                Phase::Fetching,
                format!("Resolving the DOI {doi}"),
            ));
            resolve_doi(&http, &records.doi_resolver, doi).await?
        }
        RecordSource::Url(url) | RecordSource::Invenio { url, .. } => url.clone(),
    };
    let (api, id, landing) = invenio_record(&landing, records).ok_or_else(|| {
        let what = match spec {
            RecordSource::Doi { doi, .. } => format!("the DOI {doi} lands on {landing}, which"),
            _ => landing.clone(),
        };
        BuildError::BadSource {
            spec: spec_text(spec),
            reason: format!(
                "{what} is not a record of an InvenioRDM installation kiln fetches from ({}; KILN_INVENIO_HOSTS adds others)",
                records.invenio_hosts.join(", ")
            ),
        }
    })?;
    sink.emit(Event::new(
        Phase::Fetching,
        format!("Fetching the metadata of record {id} from {api}"),
    ));
    #[derive(Deserialize)]
    struct Links {
        files: Option<String>,
    }
    #[derive(Deserialize)]
    struct Metadata {
        #[serde(default)]
        links: Option<Links>,
        #[serde(default)]
        created: Option<String>,
    }
    let metadata: Metadata = http.json(&api, &format!("record {id}")).await?;
    let files_url = metadata
        .links
        .and_then(|l| l.files)
        .unwrap_or_else(|| format!("{api}/files"));
    #[derive(Deserialize)]
    struct FileLinks {
        content: String,
    }
    #[derive(Deserialize)]
    struct Entry {
        key: String,
        #[serde(default)]
        size: Option<u64>,
        #[serde(default)]
        checksum: Option<String>,
        links: FileLinks,
    }
    #[derive(Deserialize)]
    struct Files {
        #[serde(default)]
        entries: Vec<Entry>,
    }
    let listed: Files = http
        .json(&files_url, &format!("the files of record {id}"))
        .await?;
    if listed.entries.is_empty() {
        return Err(failed(&files_url, format!("record {id} has no files"), 404));
    }
    let limits = &settings.limits;
    if listed.entries.len() as u64 > limits.max_files {
        return Err(BuildError::TooLarge {
            limit: limits.max_files,
            unit: "files",
            option: "--max-repo-files",
        });
    }
    let total: u64 = listed.entries.iter().filter_map(|e| e.size).sum();
    if total > limits.max_bytes {
        return Err(BuildError::TooLarge {
            limit: limits.max_bytes,
            unit: "bytes",
            option: "--max-repo-bytes",
        });
    }
    let files = listed
        .entries
        .into_iter()
        .map(|e| RemoteFile {
            key: e.key,
            url: e.links.content,
            size: e.size,
            md5: e
                .checksum
                .and_then(|c| c.strip_prefix("md5:").map(str::to_lowercase)),
        })
        .collect();
    let time = metadata
        .created
        .as_deref()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(0, |t| t.unix_timestamp());
    Ok(Record {
        source: RecordSource::Invenio {
            url: landing.clone(),
            id: id.clone(),
        },
        id,
        url: landing,
        files,
        time,
    })
}

fn spec_text(spec: &RecordSource) -> String {
    crate::source::Source::Record(spec.clone()).to_string()
}

/// The URL the DOI resolver's handle API gives for `doi` (its first `URL` value).
async fn resolve_doi(http: &Http, resolver: &str, doi: &str) -> Result<String, BuildError> {
    let encoded: String = doi
        .split('/')
        .map(|part| percent_encoding::utf8_percent_encode(part, DOI_PART).to_string())
        .collect::<Vec<_>>()
        .join("/");
    let url = format!("{resolver}api/handles/{encoded}");
    #[derive(Deserialize)]
    struct Data {
        #[serde(default)]
        value: serde_json::Value,
    }
    #[derive(Deserialize)]
    struct Value {
        #[serde(rename = "type")]
        kind: String,
        data: Data,
    }
    #[derive(Deserialize)]
    struct Handle {
        #[serde(default)]
        values: Vec<Value>,
    }
    let handle: Handle = http
        .json(&url, &format!("the DOI {doi}"))
        .await
        .map_err(|e| match e {
            BuildError::Record { status: 404, .. } => BuildError::UnknownRef {
                url: resolver.to_string(),
                reference: doi.to_string(),
                hint: " (the DOI resolver does not know this DOI)".into(),
            },
            other => other,
        })?;
    handle
        .values
        .into_iter()
        .find(|v| v.kind == "URL")
        .and_then(|v| v.data.value.as_str().map(str::to_string))
        .ok_or_else(|| failed(&url, format!("the DOI {doi} names no URL"), 404))
}

/// For a landing URL of a known installation: its API URL for the record, the record id and the
/// canonical landing URL. `/records/ID`, `/record/ID` and `/doi/PREFIX/zenodo.ID` are understood.
fn invenio_record(landing: &str, records: &RecordSettings) -> Option<(String, String, String)> {
    let url = url::Url::parse(landing).ok()?;
    if !matches!(url.scheme(), "https" | "http") {
        return None;
    }
    let host = url.host_str()?.to_lowercase();
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    if !records.invenio_hosts.iter().any(|h| *h == authority) {
        return None;
    }
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    let id = match segments.as_slice() {
        ["records" | "record", id, ..] => id.to_string(),
        ["doi", .., last] => last
            .rsplit_once("zenodo.")
            .map_or(*last, |(_, id)| id)
            .to_string(),
        _ => return None,
    };
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !id_ok {
        return None;
    }
    let base = format!("{}://{authority}", url.scheme());
    Some((
        format!("{base}/api/records/{id}"),
        id.clone(),
        format!("{base}/records/{id}"),
    ))
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
    if let [only] = record.files.as_slice()
        && only.key.to_lowercase().ends_with(".zip")
    {
        let archive = dest.join(safe_path(&only.key).expect("checked above"));
        sink.emit(Event::new(
            Phase::Fetching,
            format!("Unpacking {}", only.key),
        ));
        let (task_archive, task_dest) = (archive.clone(), dest.to_path_buf());
        tokio::task::spawn_blocking(move || unpack(&task_archive, &task_dest, &limits, budget))
            .await
            .map_err(|e| BuildError::Invalid(format!("unpacking stopped: {e}")))??;
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

/// Unpack the zip `archive` into `dest` (then remove it): entries only inside `dest`, no links,
/// at most the file limit and the bytes left of the budget; a single folder at the top is
/// flattened into `dest`, as repo2docker does.
fn unpack(
    archive: &Path,
    dest: &Path,
    limits: &crate::git::FetchLimits,
    budget: u64,
) -> Result<(), BuildError> {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bad = |reason: String| BuildError::Invalid(format!("the archive {name} {reason}"));
    let file =
        std::fs::File::open(archive).map_err(|e| BuildError::io("opening the archive", e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("is not a zip file: {e}")))?;
    if zip.len() as u64 > limits.max_files {
        return Err(BuildError::TooLarge {
            limit: limits.max_files,
            unit: "files",
            option: "--max-repo-files",
        });
    }
    let unpacked = tempfile::Builder::new()
        .prefix(".kiln-unpack-")
        .tempdir_in(dest)
        .map_err(|e| BuildError::io("unpacking the archive", e))?;
    let mut left = budget;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| bad(format!("cannot be read: {e}")))?;
        let entry_name = entry.name().map(|n| n.to_string()).unwrap_or_default();
        let Some(relative) = entry
            .enclosed_name()
            .filter(|p| p.components().all(|c| matches!(c, Component::Normal(_))))
        else {
            return Err(bad(format!(
                "has the entry {entry_name:?}, which would land outside the folder it is unpacked into"
            )));
        };
        if entry.is_symlink() {
            return Err(bad(format!(
                "has the link {entry_name:?}: links are not unpacked"
            )));
        }
        let target = unpacked.path().join(&relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| BuildError::io("unpacking", e))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| BuildError::io("unpacking", e))?;
        }
        let mut out = std::fs::File::create(&target).map_err(|e| BuildError::io("unpacking", e))?;
        // The sizes in the archive's headers are the archive's word: count what comes out.
        let written = std::io::copy(&mut (&mut entry).take(left + 1), &mut out)
            .map_err(|e| bad(format!("cannot be unpacked: {e}")))?;
        if written > left {
            return Err(BuildError::TooLarge {
                limit: limits.max_bytes,
                unit: "bytes",
                option: "--max-repo-bytes",
            });
        }
        left -= written;
        // An executable file (a postBuild, a start) stays executable; nothing else of the mode is
        // kept (no setuid, no world-writable files).
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .map_err(|e| BuildError::io("unpacking", e))?;
        }
    }
    std::fs::remove_file(archive).map_err(|e| BuildError::io("removing the archive", e))?;
    // A single folder at the top is the record's content.
    let top: Vec<PathBuf> = std::fs::read_dir(unpacked.path())
        .map_err(|e| BuildError::io("unpacking", e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let from = match top.as_slice() {
        [only] if only.is_dir() => only.clone(),
        _ => unpacked.path().to_path_buf(),
    };
    for entry in std::fs::read_dir(&from).map_err(|e| BuildError::io("unpacking", e))? {
        let entry = entry.map_err(|e| BuildError::io("unpacking", e))?;
        std::fs::rename(entry.path(), dest.join(entry.file_name()))
            .map_err(|e| BuildError::io("unpacking", e))?;
    }
    Ok(())
}
