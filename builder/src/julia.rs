//! The official list of Julia releases (`versions.json`, or the operator's mirror of it), fetched
//! for plans that install Julia, so that any released version that `[compat] julia` admits can be
//! chosen. The list is kept for a day in `$XDG_CACHE_HOME/kiln/julia/` (`~/.cache/kiln/julia/`);
//! when it cannot be fetched, an older copy is used, and without one kiln's built-in list, each
//! time with a warning.

use std::path::PathBuf;
use std::time::Duration;

use kiln_buildpacks::options::{JuliaRelease, JuliaReleases};
use sha2::Digest;

use crate::events::{Event, EventSink, Phase};

/// How long a fetched list is used without asking again.
const FRESH_FOR: Duration = Duration::from_secs(24 * 3600);
/// The official list is about 1.5 MB; a mirror that sends far more is not sending the list.
const MAX_BYTES: usize = 32 << 20;
const TIMEOUT: Duration = Duration::from_secs(30);

/// The releases to plan with, from `url`: fresh from the cache, fetched, or a stale copy; `None`
/// when none of them can be had (the plan then uses the built-in list). Every fallback is said in
/// an event.
pub async fn releases(url: &str, sink: &mut dyn EventSink) -> Option<JuliaReleases> {
    let cached = cache_path(url);
    let age = cached
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.elapsed().ok());
    if let (Some(path), Some(age)) = (&cached, age)
        && age < FRESH_FOR
        && let Some(releases) = read_cached(path, url)
    {
        return Some(releases);
    }
    let fetched = fetch(url).await.and_then(|bytes| {
        let releases = parse(&bytes)?;
        Ok((bytes, releases))
    });
    match fetched {
        Ok((bytes, releases)) => {
            if let Some(path) = &cached {
                let _ = std::fs::create_dir_all(path.parent().expect("a file in a folder"))
                    .and_then(|_| {
                        let partial = path.with_extension("partial");
                        std::fs::write(&partial, &bytes)?;
                        std::fs::rename(&partial, path)
                    });
            }
            Some(JuliaReleases {
                source: format!("the list of Julia releases at {url}"),
                releases,
            })
        }
        Err(reason) => {
            let stale = cached.as_ref().and_then(|p| read_cached(p, url));
            let message = match &stale {
                Some(_) => format!(
                    "Warning: cannot fetch the list of Julia releases ({reason}); using the copy fetched earlier"
                ),
                None => format!(
                    "Warning: cannot fetch the list of Julia releases ({reason}); choosing from kiln's built-in list (set KILN_JULIA_VERSIONS_URL to a mirror of it)"
                ),
            };
            sink.emit(Event::new(Phase::Building, message));
            stale
        }
    }
}

fn read_cached(path: &std::path::Path, url: &str) -> Option<JuliaReleases> {
    let bytes = std::fs::read(path).ok()?;
    let releases = parse(&bytes).ok()?;
    Some(JuliaReleases {
        source: format!("the list of Julia releases at {url} (kept from an earlier fetch)"),
        releases,
    })
}

/// The cache file of a list URL.
fn cache_path(url: &str) -> Option<PathBuf> {
    let digest = hex::encode(&sha2::Sha256::digest(url.as_bytes())[..8]);
    Some(crate::random::kiln_cache_dir().join(format!("julia/versions-{digest}.json")))
}

async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    if let Some(path) = url.strip_prefix("file://") {
        return tokio::fs::read(path)
            .await
            .map_err(|e| format!("reading {path}: {e}"));
    }
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let mut response = client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| e.without_url().to_string())?;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_BYTES {
            return Err(format!("the answer is larger than {} MiB", MAX_BYTES >> 20));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The stable releases of a `versions.json` with an x86_64 Linux `.tar.gz` archive, newest first.
pub fn parse(bytes: &[u8]) -> Result<Vec<JuliaRelease>, String> {
    #[derive(serde::Deserialize)]
    struct Release {
        #[serde(default)]
        stable: bool,
        #[serde(default)]
        files: Vec<File>,
    }
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        triplet: String,
        #[serde(default)]
        kind: String,
        #[serde(default)]
        extension: String,
        url: String,
        #[serde(default)]
        sha256: Option<String>,
    }
    let list: std::collections::BTreeMap<String, Release> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a list of Julia releases: {e}"))?;
    let mut releases: Vec<(Vec<u64>, JuliaRelease)> = list
        .into_iter()
        .filter(|(_, release)| release.stable)
        .filter_map(|(version, release)| {
            let key: Vec<u64> = version
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            let file = release.files.into_iter().find(|f| {
                f.triplet == "x86_64-linux-gnu" && f.kind == "archive" && f.extension == "tar.gz"
            })?;
            // A checksum that is not one is a broken entry, not one to install unchecked.
            let sha256 = match file.sha256 {
                Some(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => Some(s),
                Some(_) => return None,
                None => None,
            };
            (file.url.starts_with("https://") || file.url.starts_with("http://")).then_some((
                key,
                JuliaRelease {
                    version,
                    url: file.url,
                    sha256,
                },
            ))
        })
        .collect();
    if releases.is_empty() {
        return Err("the list has no stable release for x86_64 Linux".into());
    }
    releases.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(releases.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn stable_linux_archives_newest_first_and_nothing_else() {
        let list = br#"{
          "1.3.1": {"stable": true, "files": [
            {"triplet": "x86_64-linux-gnu", "kind": "archive", "extension": "tar.gz",
             "url": "https://example.org/julia-1.3.1-linux-x86_64.tar.gz",
             "sha256": "0000000000000000000000000000000000000000000000000000000000000001"},
            {"triplet": "x86_64-apple-darwin14", "kind": "archive", "extension": "tar.gz",
             "url": "https://example.org/julia-1.3.1-mac64.tar.gz"}]},
          "1.10.0": {"stable": true, "files": [
            {"triplet": "x86_64-linux-gnu", "kind": "archive", "extension": "tar.gz",
             "url": "https://example.org/julia-1.10.0-linux-x86_64.tar.gz"}]},
          "1.9.0": {"stable": true, "files": [
            {"triplet": "x86_64-linux-gnu", "kind": "archive", "extension": "tar.gz",
             "url": "https://example.org/julia-1.9.0-linux-x86_64.tar.gz", "sha256": "not hex"}]},
          "1.11.0-rc1": {"stable": false, "files": [
            {"triplet": "x86_64-linux-gnu", "kind": "archive", "extension": "tar.gz",
             "url": "https://example.org/julia-1.11.0-rc1-linux-x86_64.tar.gz"}]},
          "1.2.0": {"stable": true, "files": [
            {"triplet": "x86_64-linux-gnu", "kind": "installer", "extension": "exe",
             "url": "https://example.org/julia-1.2.0.exe"}]},
          "1.4.0": {"stable": true, "files": [
            {"triplet": "x86_64-linux-gnu", "kind": "archive", "extension": "tar.gz",
             "url": "ftp://example.org/julia-1.4.0.tar.gz"}]}
        }"#;
        let releases = super::parse(list).unwrap();
        let versions: Vec<&str> = releases.iter().map(|r| r.version.as_str()).collect();
        assert_eq!(versions, ["1.10.0", "1.3.1"]);
        assert_eq!(
            releases[0].sha256, None,
            "no checksum in the list, none to check"
        );
        assert_eq!(
            releases[1].sha256.as_deref(),
            Some("0000000000000000000000000000000000000000000000000000000000000001")
        );
        assert!(super::parse(b"{}").is_err());
        assert!(super::parse(b"[1, 2]").is_err());
    }
}
