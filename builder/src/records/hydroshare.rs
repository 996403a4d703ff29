//! HydroShare: a resource's landing URL `/resource/<32 hex>/` on a host in
//! `KILN_HYDROSHARE_HOSTS` (DOIs `10.4211/hs.<id>` land there); its system metadata from
//! `/hsapi/resource/<id>/sysmeta/` (`date_last_updated` makes the version), its files as the bag
//! `/django_s3/download/bags/<id>.zip` (asked for again while the server answers 202 and makes
//! it), of which `data/contents` is the resource's own files. `<id>.v<last update as seconds>`
//! names one version.

use serde::Deserialize;

use super::http::Http;
use super::{Record, RecordSettings, RemoteFile, authority, seconds};
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};
use crate::source::RecordSource;

pub(super) fn is_record(url: &url::Url, records: &RecordSettings) -> bool {
    authority(url).is_some_and(|a| records.hydroshare_hosts.contains(&a)) && resource(url).is_some()
}

fn resource(url: &url::Url) -> Option<String> {
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["resource", id, ..] if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(id.to_lowercase())
        }
        _ => None,
    }
}

pub(super) async fn resolve(
    http: &Http,
    landing: &url::Url,
    sink: &mut dyn EventSink,
) -> Result<Record, BuildError> {
    let id = resource(landing).expect("is_record checked it");
    let base = format!(
        "{}://{}",
        landing.scheme(),
        authority(landing).expect("is_record checked it")
    );
    sink.emit(Event::new(
        Phase::Fetching,
        format!("Fetching the metadata of HydroShare resource {id} from {base}"),
    ));
    #[derive(Deserialize)]
    struct Sysmeta {
        date_last_updated: String,
    }
    let sysmeta: Sysmeta = http
        .json(
            &format!("{base}/hsapi/resource/{id}/sysmeta/"),
            &format!("HydroShare resource {id}"),
        )
        .await?;
    let updated = seconds(Some(&sysmeta.date_last_updated));
    let version = format!("{id}.v{updated}");
    let url = format!("{base}/resource/{id}/");
    Ok(Record {
        source: RecordSource::Resolved {
            provider: "hydroshare".into(),
            url: url.clone(),
            slug: format!("hydroshare-{id}"),
            version: version.clone(),
        },
        version,
        url,
        files: vec![RemoteFile {
            key: format!("{id}.zip"),
            url: format!("{base}/django_s3/download/bags/{id}.zip"),
            size: None,
            md5: None,
        }],
        time: updated,
        content_root: Some("data/contents"),
    })
}
