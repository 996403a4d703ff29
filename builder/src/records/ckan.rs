//! CKAN (any portal): a dataset URL `<portal>/dataset/<id>`, or one version of it
//! (`<portal>/dataset/<id>/history/<activity id>` or `?activity_id=<activity id>`), named with
//! `ckan:` (or through the service's `ckan` provider); the dataset from
//! `<portal>/api/3/action/package_show?id=<id>` (a version from
//! `activity_show?id=<activity id>&include_data=true`), its resources downloaded from their URLs
//! (each through the guarded client, wherever it points). `<name>.v<metadata_modified>` names
//! one version for good.

use serde::Deserialize;

use super::http::Http;
use super::{Record, RemoteFile, failed};
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};
use crate::source::{RecordSource, slugify};

/// The portal's base URL, the dataset id and the activity, for a dataset URL.
fn dataset(url: &url::Url) -> Option<(String, String, Option<String>)> {
    let path = url.path();
    let (base, rest) = path.split_once("/dataset/")?;
    let mut parts = rest.split('/').filter(|p| !p.is_empty());
    let id = parts.next()?.to_string();
    let activity = match (parts.next(), parts.next()) {
        (Some("history"), Some(activity)) => Some(activity.to_string()),
        _ => url
            .query_pairs()
            .find(|(k, _)| k == "activity_id")
            .map(|(_, v)| v.into_owned()),
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !plain(&id) || activity.as_deref().is_some_and(|a| !plain(a)) {
        return None;
    }
    let base = format!(
        "{}://{}{}",
        url.scheme(),
        super::authority(url)?,
        base.trim_end_matches('/')
    );
    Some((base, id, activity))
}

pub(super) async fn resolve(
    http: &Http,
    landing: &str,
    sink: &mut dyn EventSink,
) -> Result<Record, BuildError> {
    let url = url::Url::parse(landing)
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http"))
        .and_then(|u| dataset(&u))
        .ok_or_else(|| BuildError::BadSource {
            spec: format!("ckan:{landing}"),
            reason: "a CKAN dataset is named by its URL: <portal>/dataset/<id>, optionally with /history/<activity id> or ?activity_id=<activity id>".into(),
        })?;
    let (base, id, activity) = url;
    #[derive(Deserialize)]
    struct Resource {
        #[serde(default)]
        name: Option<String>,
        url: String,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
        metadata_modified: String,
        #[serde(default)]
        resources: Vec<Resource>,
    }
    #[derive(Deserialize)]
    struct Shown<T> {
        result: T,
    }
    let package = match &activity {
        None => {
            let api = format!("{base}/api/3/action/package_show?id={id}");
            sink.emit(Event::new(
                Phase::Fetching,
                format!("Fetching the CKAN dataset {id} from {base}"),
            ));
            http.json::<Shown<Package>>(&api, &format!("the CKAN dataset {id}"))
                .await?
                .result
        }
        Some(activity) => {
            #[derive(Deserialize)]
            struct Data {
                package: Package,
            }
            #[derive(Deserialize)]
            struct Activity {
                data: Data,
            }
            let api = format!("{base}/api/3/action/activity_show?id={activity}&include_data=true");
            sink.emit(Event::new(
                Phase::Fetching,
                format!("Fetching version {activity} of the CKAN dataset {id} from {base}"),
            ));
            http.json::<Shown<Activity>>(
                &api,
                &format!("version {activity} of the CKAN dataset {id}"),
            )
            .await?
            .result
            .data
            .package
        }
    };
    let modified = time::PrimitiveDateTime::parse(
        package
            .metadata_modified
            .split('.')
            .next()
            .unwrap_or_default(),
        &time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    )
    .map(|t| t.assume_utc().unix_timestamp())
    .map_err(|_| {
        failed(
            &base,
            format!(
                "the dataset's metadata_modified {:?} is not a time",
                package.metadata_modified
            ),
            502,
        )
    })?;
    let mut files = Vec::new();
    for resource in package.resources {
        let from_url = url::Url::parse(&resource.url)
            .ok()
            .and_then(|u| {
                u.path_segments()
                    .and_then(|mut s| s.next_back().map(str::to_string))
            })
            .filter(|n| !n.is_empty());
        let key = from_url
            .or(resource.name)
            .unwrap_or_else(|| format!("resource-{}", files.len() + 1));
        files.push(RemoteFile {
            key,
            url: resource.url,
            size: None,
            md5: None,
        });
    }
    let name = slugify(&package.name);
    let version = format!("{name}.v{modified}");
    let url = match &activity {
        Some(activity) => format!("{base}/dataset/{id}/history/{activity}"),
        None => format!("{base}/dataset/{id}"),
    };
    Ok(Record {
        source: RecordSource::Resolved {
            provider: "ckan".into(),
            url: url.clone(),
            slug: format!("ckan-{name}"),
            version: version.clone(),
        },
        version,
        url,
        files,
        time: modified,
        content_root: None,
    })
}
