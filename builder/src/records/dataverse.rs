//! Dataverse: a landing URL with a `persistentId` (`/dataset.xhtml?persistentId=doi:...`, or
//! `/citation?persistentId=...`, where DOIs land) on a host in `KILN_DATAVERSE_HOSTS`; the
//! dataset's latest published version from `/api/datasets/:persistentId?persistentId=<pid>`
//! (`versionNumber`, `versionMinorNumber`, the files with `directoryLabel`, `restricted` and
//! `dataFile`: `id`, `filename`, `originalFileName`, `md5`), each file from
//! `/api/access/datafile/<id>?format=original` (the file as uploaded, which the md5 is of).
//! `v<major>.<minor>` of that dataset names one version for good.

use serde::Deserialize;

use super::http::Http;
use super::{Record, RecordSettings, RemoteFile, authority, failed, seconds};
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};
use crate::source::RecordSource;

pub(super) fn is_record(url: &url::Url, records: &RecordSettings) -> bool {
    authority(url).is_some_and(|a| records.dataverse_hosts.contains(&a))
        && persistent_id(url).is_some()
}

fn persistent_id(url: &url::Url) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == "persistentId")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty() && v.len() <= 256 && !v.chars().any(char::is_control))
}

pub(super) async fn resolve(
    http: &Http,
    landing: &url::Url,
    sink: &mut dyn EventSink,
) -> Result<Record, BuildError> {
    let pid = persistent_id(landing).expect("is_record checked it");
    let base = format!(
        "{}://{}",
        landing.scheme(),
        authority(landing).expect("is_record checked it")
    );
    let mut api = url::Url::parse(&format!("{base}/api/datasets/:persistentId"))
        .map_err(|e| failed(&base, e.to_string(), 400))?;
    api.query_pairs_mut().append_pair("persistentId", &pid);
    sink.emit(Event::new(
        Phase::Fetching,
        format!("Fetching the metadata of the Dataverse dataset {pid} from {base}"),
    ));
    #[derive(Deserialize)]
    struct DataFile {
        id: u64,
        filename: String,
        #[serde(default, rename = "originalFileName")]
        original_file_name: Option<String>,
        #[serde(default)]
        md5: Option<String>,
        #[serde(default)]
        filesize: Option<u64>,
    }
    #[derive(Deserialize)]
    struct File {
        #[serde(default, rename = "directoryLabel")]
        directory_label: Option<String>,
        #[serde(default)]
        restricted: bool,
        #[serde(rename = "dataFile")]
        data_file: DataFile,
    }
    #[derive(Deserialize)]
    struct Version {
        #[serde(rename = "versionNumber")]
        major: u64,
        #[serde(rename = "versionMinorNumber")]
        minor: u64,
        #[serde(default, rename = "releaseTime")]
        release_time: Option<String>,
        #[serde(default)]
        files: Vec<File>,
    }
    #[derive(Deserialize)]
    struct Data {
        #[serde(rename = "latestVersion")]
        latest: Version,
    }
    #[derive(Deserialize)]
    struct Answer {
        data: Data,
    }
    let answer: Answer = http
        .json(api.as_str(), &format!("the Dataverse dataset {pid}"))
        .await?;
    let version = answer.data.latest;
    let mut files = Vec::new();
    for file in version.files {
        let name = file
            .data_file
            .original_file_name
            .unwrap_or(file.data_file.filename);
        let key = match file.directory_label.filter(|d| !d.is_empty()) {
            Some(dir) => format!("{}/{name}", dir.trim_matches('/')),
            None => name,
        };
        if file.restricted {
            return Err(failed(
                landing.as_str(),
                format!("{key} is restricted or embargoed: kiln fetches open records only"),
                403,
            ));
        }
        files.push(RemoteFile {
            key,
            url: format!(
                "{base}/api/access/datafile/{}?format=original",
                file.data_file.id
            ),
            // The listed size is that of an ingested table, not of the original.
            size: file.data_file.filesize.filter(|_| false),
            md5: file.data_file.md5.map(|m| m.to_lowercase()),
        });
    }
    let tag = format!("v{}.{}", version.major, version.minor);
    let mut url = url::Url::parse(&format!("{base}/dataset.xhtml"))
        .map_err(|e| failed(&base, e.to_string(), 400))?;
    url.query_pairs_mut()
        .append_pair("persistentId", &pid)
        .append_pair("version", &format!("{}.{}", version.major, version.minor));
    Ok(Record {
        source: RecordSource::Resolved {
            provider: "dataverse".into(),
            url: url.to_string(),
            slug: format!("dataverse-{}", crate::source::slugify(&pid)),
            version: tag.clone(),
        },
        version: tag,
        url: url.to_string(),
        files,
        time: seconds(version.release_time.as_deref()),
        content_root: None,
    })
}
