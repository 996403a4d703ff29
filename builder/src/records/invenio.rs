//! Zenodo and other InvenioRDM installations: a landing URL `/records/<id>` (or `/record/<id>`,
//! `/doi/<prefix>/zenodo.<id>`) of a host in `KILN_INVENIO_HOSTS`; the record's metadata from
//! `/api/records/<id>`, its files from the metadata's `links.files` (`entries`: `key`, `size`,
//! `checksum` `md5:<hex>`, `links.content`). A record id names one version for good.

use serde::Deserialize;

use super::http::Http;
use super::{Record, RecordSettings, RemoteFile, authority, seconds};
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};
use crate::source::RecordSource;

pub(super) fn is_record(url: &url::Url, records: &RecordSettings) -> bool {
    authority(url).is_some_and(|a| records.invenio_hosts.contains(&a)) && record_id(url).is_some()
}

fn record_id(url: &url::Url) -> Option<String> {
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    let id = match segments.as_slice() {
        ["records" | "record", id, ..] => id.to_string(),
        ["doi", .., last] => last
            .rsplit_once("zenodo.")
            .map_or(*last, |(_, id)| id)
            .to_string(),
        _ => return None,
    };
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then_some(id)
}

pub(super) async fn resolve(
    http: &Http,
    landing: &url::Url,
    sink: &mut dyn EventSink,
) -> Result<Record, BuildError> {
    let id = record_id(landing).expect("is_record checked it");
    let base = format!(
        "{}://{}",
        landing.scheme(),
        authority(landing).expect("is_record checked it")
    );
    let api = format!("{base}/api/records/{id}");
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
    let url = format!("{base}/records/{id}");
    Ok(Record {
        source: RecordSource::Resolved {
            provider: "zenodo".into(),
            url: url.clone(),
            slug: format!("zenodo-{id}"),
            version: id.clone(),
        },
        version: id,
        url,
        files,
        time: seconds(metadata.created.as_deref()),
        content_root: None,
    })
}
