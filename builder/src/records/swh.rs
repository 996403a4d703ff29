//! Software Heritage: a SWHID of a directory or a revision (`swh:1:dir:<40 hex>`,
//! `swh:1:rev:<40 hex>`, qualifiers after `;` ignored). A revision is looked up for its directory
//! (`revision/<hash>/`); the directory is cooked by the vault (`POST vault/flat/<SWHID>/`, then
//! polled until `done`) and its tar.gz downloaded from the `fetch_url` the vault gives. The
//! directory's hash names its content for good.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::http::Http;
use super::{Record, RecordSettings, RemoteFile, failed, seconds};
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};
use crate::source::RecordSource;

/// How often the vault is asked whether a bundle is ready.
const POLL: Duration = Duration::from_secs(2);

/// `swh:1:dir:<hash>` or `swh:1:rev:<hash>` without qualifiers, `None` for anything else.
pub fn parse(text: &str) -> Option<String> {
    let core = text.trim().split(';').next()?;
    let mut parts = core.split(':');
    let (scheme, version, kind, hash) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let ok = scheme == "swh"
        && version == "1"
        && matches!(kind, "dir" | "rev")
        && hash.len() == 40
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && parts.next().is_none();
    ok.then(|| format!("swh:1:{kind}:{}", hash.to_lowercase()))
}

pub(super) async fn resolve(
    http: &Http,
    swhid: &str,
    records: &RecordSettings,
    timeout: Duration,
    sink: &mut dyn EventSink,
) -> Result<Record, BuildError> {
    let api = &records.swh_api;
    let hash = swhid.rsplit(':').next().unwrap_or_default().to_string();
    let (directory, time) = if swhid.starts_with("swh:1:rev:") {
        #[derive(Deserialize)]
        struct Revision {
            directory: String,
            #[serde(default)]
            date: Option<String>,
        }
        let revision: Revision = http
            .json(
                &format!("{api}revision/{hash}/"),
                &format!("the revision {swhid}"),
            )
            .await?;
        if revision.directory.len() != 40
            || !revision.directory.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(failed(api, "the revision names no directory", 502));
        }
        (
            revision.directory.to_lowercase(),
            seconds(revision.date.as_deref()),
        )
    } else {
        (hash, 0)
    };
    let dir = format!("swh:1:dir:{directory}");
    let vault = format!("{api}vault/flat/{dir}/");
    sink.emit(Event::new(
        Phase::Fetching,
        format!("Asking Software Heritage's vault for {dir}"),
    ));
    #[derive(Deserialize)]
    struct Cooking {
        status: String,
        #[serde(default)]
        fetch_url: Option<String>,
        #[serde(default)]
        progress_message: Option<String>,
    }
    let started = Instant::now();
    let mut cooking: Cooking = http
        .post_json(&vault, &format!("the vault bundle of {dir}"))
        .await?;
    loop {
        match cooking.status.as_str() {
            "done" => break,
            "failed" => {
                return Err(failed(
                    &vault,
                    format!(
                        "the vault could not make the bundle: {}",
                        cooking.progress_message.unwrap_or_default()
                    ),
                    502,
                ));
            }
            _ if started.elapsed() > timeout => {
                return Err(BuildError::FetchTimeout(timeout));
            }
            status => {
                sink.emit(Event::new(
                    Phase::Fetching,
                    format!(
                        "The vault is making the bundle ({status}{})",
                        cooking
                            .progress_message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    ),
                ));
                tokio::time::sleep(POLL).await;
                cooking = http
                    .json(&vault, &format!("the vault bundle of {dir}"))
                    .await?;
            }
        }
    }
    let fetch_url = cooking
        .fetch_url
        .ok_or_else(|| failed(&vault, "the finished bundle has no fetch_url", 502))?;
    Ok(Record {
        source: RecordSource::Resolved {
            provider: "swh".into(),
            url: dir.clone(),
            slug: format!("swh-{directory}"),
            version: directory.clone(),
        },
        version: directory.clone(),
        url: dir,
        files: vec![RemoteFile {
            key: format!("{directory}.tar.gz"),
            url: fetch_url,
            size: None,
            md5: None,
        }],
        time,
        content_root: None,
    })
}
