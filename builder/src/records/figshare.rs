//! Figshare: a landing URL `/articles/[<type>/<slug>/]<id>[/<version>]` of a host in
//! `KILN_FIGSHARE_HOSTS` (DOIs `10.6084/m9.figshare.<id>[.v<n>]` land there); the article's
//! versions from `<api>articles/<id>/versions` (the newest when the URL names none), its files
//! from `<api>articles/<id>/versions/<n>` (`name`, `size`, `download_url`, `computed_md5`; link-only
//! files are left out, as repo2docker does). `<id>.v<n>` names one version for good.

use serde::Deserialize;

use super::http::Http;
use super::{Record, RecordSettings, RemoteFile, authority, failed, seconds};
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};
use crate::source::RecordSource;

pub(super) fn is_record(url: &url::Url, records: &RecordSettings) -> bool {
    authority(url).is_some_and(|a| records.figshare_hosts.contains(&a)) && article(url).is_some()
}

/// The article id and the version the URL names.
fn article(url: &url::Url) -> Option<(u64, Option<u64>)> {
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    if segments.first() != Some(&"articles") {
        return None;
    }
    let numbers: Vec<Option<u64>> = segments[1..].iter().map(|s| s.parse().ok()).collect();
    match numbers.as_slice() {
        [.., Some(id), Some(version)] if numbers.len() >= 2 => Some((*id, Some(*version))),
        [.., Some(id)] => Some((*id, None)),
        _ => None,
    }
}

pub(super) async fn resolve(
    http: &Http,
    landing: &url::Url,
    records: &RecordSettings,
    sink: &mut dyn EventSink,
) -> Result<Record, BuildError> {
    let (id, asked) = article(landing).expect("is_record checked it");
    let api = &records.figshare_api;
    let version = match asked {
        Some(version) => version,
        None => {
            #[derive(Deserialize)]
            struct Version {
                version: u64,
            }
            let versions: Vec<Version> = http
                .json(
                    &format!("{api}articles/{id}/versions"),
                    &format!("Figshare article {id}"),
                )
                .await?;
            versions
                .iter()
                .map(|v| v.version)
                .max()
                .ok_or_else(|| failed(landing.as_str(), "the article has no version", 404))?
        }
    };
    let url = format!("{api}articles/{id}/versions/{version}");
    sink.emit(Event::new(
        Phase::Fetching,
        format!("Fetching the metadata of Figshare article {id} version {version} from {url}"),
    ));
    #[derive(Deserialize)]
    struct File {
        name: String,
        #[serde(default)]
        size: Option<u64>,
        #[serde(default)]
        is_link_only: bool,
        download_url: String,
        #[serde(default)]
        computed_md5: Option<String>,
    }
    #[derive(Deserialize)]
    struct Article {
        #[serde(default)]
        files: Vec<File>,
        #[serde(default)]
        published_date: Option<String>,
    }
    let article: Article = http
        .json(&url, &format!("Figshare article {id} version {version}"))
        .await?;
    let files = article
        .files
        .into_iter()
        .filter(|f| !f.is_link_only)
        .map(|f| RemoteFile {
            key: f.name,
            url: f.download_url,
            size: f.size,
            md5: f
                .computed_md5
                .map(|m| m.to_lowercase())
                .filter(|m| !m.is_empty()),
        })
        .collect();
    let base = format!(
        "{}://{}",
        landing.scheme(),
        authority(landing).expect("is_record checked it")
    );
    let landing = format!("{base}/articles/{id}/{version}");
    let tag = format!("{id}.v{version}");
    Ok(Record {
        source: RecordSource::Resolved {
            provider: "figshare".into(),
            url: landing.clone(),
            slug: format!("figshare-{id}"),
            version: tag.clone(),
        },
        version: tag,
        url: landing,
        files,
        time: seconds(article.published_date.as_deref()),
        content_root: None,
    })
}
