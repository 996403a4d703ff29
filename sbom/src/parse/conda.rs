//! The `conda-lock` and `conda-meta` sections: kiln's `@EXPLICIT` lock of a prefix
//! (`URL#sha256:HEX` lines, name, version and build from the file name
//! `name-version-build.conda|.tar.bz2`, subdir and channel from the URL), and the names of the
//! prefix's `conda-meta/*.json` records, which say what is installed now.

use std::collections::BTreeMap;

use crate::error::SbomError;
use crate::record::{CondaEnvironment, CondaPackage, without_credentials};

/// The packages of an `@EXPLICIT` list. Lines before `@EXPLICIT` and comments are skipped; a
/// fragment is `sha256:HEX`, a bare 64-digit sha256, or an md5 (kept as no sha256).
pub fn parse_lock(text: &str, first_line: usize) -> Result<Vec<CondaPackage>, SbomError> {
    let mut out = Vec::new();
    let mut explicit = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "@EXPLICIT" {
            explicit = true;
            continue;
        }
        if !explicit {
            continue;
        }
        let bad = |reason: String| SbomError::parse("conda-lock", Some(first_line + i), reason);
        let (url, fragment) = line.split_once('#').unwrap_or((line, ""));
        let fragment = fragment.trim();
        let hex = fragment.strip_prefix("sha256:").unwrap_or(fragment);
        let sha256 = (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| hex.to_ascii_lowercase());
        let parsed = url::Url::parse(url.trim()).map_err(|e| bad(format!("{url:?}: {e}")))?;
        let mut package = from_url(&parsed).map_err(bad)?;
        package.sha256 = sha256;
        out.push(package);
    }
    if !explicit {
        return Err(SbomError::parse(
            "conda-lock",
            None,
            "no @EXPLICIT line: not a conda explicit lock",
        ));
    }
    Ok(out)
}

/// Name, version, build, subdir, channel and URL of a package archive URL. An anaconda.org
/// token (`/t/TOKEN/` at the start of the path) and user information are removed.
fn from_url(url: &url::Url) -> Result<CondaPackage, String> {
    let mut segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    if segments.first() == Some(&"t") && segments.len() > 2 {
        segments.drain(..2);
    }
    let file = segments.last().copied().unwrap_or_default();
    let (name, version, build) =
        split_file_name(file).ok_or_else(|| format!("{file:?} is not NAME-VERSION-BUILD.conda"))?;
    let subdir = (segments.len() >= 2).then(|| segments[segments.len() - 2].to_string());
    let mut base = url.clone();
    base.set_query(None);
    base.set_fragment(None);
    let channel_path = if segments.len() > 2 {
        segments[..segments.len() - 2].join("/")
    } else {
        String::new()
    };
    base.set_path(&channel_path);
    let channel = without_credentials(base.as_str().trim_end_matches('/'));
    base.set_path(&segments.join("/"));
    Ok(CondaPackage {
        name,
        version,
        build,
        subdir,
        channel: Some(channel),
        url: Some(without_credentials(base.as_str())),
        sha256: None,
    })
}

/// `name-version-build` of `name-version-build.conda`, `.tar.bz2` or `.json` (a conda-meta
/// record).
fn split_file_name(file: &str) -> Option<(String, String, String)> {
    let stem = file
        .strip_suffix(".conda")
        .or_else(|| file.strip_suffix(".tar.bz2"))
        .or_else(|| file.strip_suffix(".json"))?;
    let mut parts = stem.rsplitn(3, '-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(b), Some(v), Some(n)) if !n.is_empty() && !v.is_empty() && !b.is_empty() => {
            Some((n.to_string(), v.to_string(), b.to_string()))
        }
        _ => None,
    }
}

/// An installed package's name, version and build, from its `conda-meta` record's file name.
pub type Installed = (String, String, String);

/// The installed packages a `conda-meta` listing names (other files are skipped).
pub fn parse_meta_names(text: &str) -> Vec<Installed> {
    text.lines()
        .filter_map(|l| split_file_name(l.trim()))
        .collect()
}

/// The conda environments: what `conda-meta` lists is installed; the lock adds URL, channel,
/// subdir and sha256 to each package it has at the same version and build. Without a listing,
/// the lock alone.
pub fn environments(
    locks: Vec<(String, Vec<CondaPackage>)>,
    metas: Vec<(String, Vec<Installed>)>,
) -> Vec<CondaEnvironment> {
    let mut by_prefix: BTreeMap<String, (Vec<CondaPackage>, Vec<Installed>)> = BTreeMap::new();
    for (prefix, lock) in locks {
        by_prefix.entry(prefix).or_default().0 = lock;
    }
    for (prefix, meta) in metas {
        by_prefix.entry(prefix).or_default().1 = meta;
    }
    by_prefix
        .into_iter()
        .filter_map(|(prefix, (lock, meta))| {
            let packages = if meta.is_empty() {
                lock
            } else {
                meta.into_iter()
                    .map(|(name, version, build)| {
                        lock.iter()
                            .find(|p| p.name == name && p.version == version && p.build == build)
                            .cloned()
                            .unwrap_or(CondaPackage {
                                name,
                                version,
                                build,
                                ..Default::default()
                            })
                    })
                    .collect()
            };
            (!packages.is_empty()).then_some(CondaEnvironment { prefix, packages })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn lock() -> String {
        format!(
            "# kiln conda lock: install with `conda create --file` or `kiln build --locked`\n# platform: linux-64\n@EXPLICIT\n\
https://conda.anaconda.org/conda-forge/linux-64/python-3.12.7-hc5c86c4_0_cpython.conda#sha256:{SHA}\n\
https://conda.anaconda.org/conda-forge/noarch/tzdata-2024b-hc8b5060_0.conda#sha256:{SHA}\n\
https://conda.anaconda.org/t/s3cr3t/private/linux-64/libfoo-1.0-h1_0.tar.bz2#{SHA}\n"
        )
    }

    #[test]
    fn explicit_lock_lines_give_channel_subdir_name_version_build() {
        let p = parse_lock(&lock(), 1).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].name, "python");
        assert_eq!(p[0].version, "3.12.7");
        assert_eq!(p[0].build, "hc5c86c4_0_cpython");
        assert_eq!(p[0].subdir.as_deref(), Some("linux-64"));
        assert_eq!(
            p[0].channel.as_deref(),
            Some("https://conda.anaconda.org/conda-forge")
        );
        assert_eq!(p[0].sha256.as_deref(), Some(SHA));
        assert_eq!(p[1].subdir.as_deref(), Some("noarch"));
        assert_eq!(
            p[2].channel.as_deref(),
            Some("https://conda.anaconda.org/private")
        );
        assert!(
            !p[2].url.as_ref().unwrap().contains("s3cr3t"),
            "the token is gone"
        );
    }

    #[test]
    fn conda_meta_says_what_is_installed_and_the_lock_what_it_came_from() {
        let lock = parse_lock(&lock(), 1).unwrap();
        let meta = parse_meta_names(
            "python-3.12.7-hc5c86c4_0_cpython.json\ntzdata-2024b-hc8b5060_0.json\nrich-13.9.4-pyhd8ed1ab_0.json\nhistory\n",
        );
        let envs = environments(
            vec![("/srv/conda/envs/notebook".into(), lock)],
            vec![("/srv/conda/envs/notebook".into(), meta)],
        );
        let p = &envs[0].packages;
        assert_eq!(p.len(), 3, "libfoo is not installed any more: {p:?}");
        let rich = p.iter().find(|p| p.name == "rich").unwrap();
        assert_eq!(
            (rich.url.as_deref(), rich.version.as_str()),
            (None, "13.9.4")
        );
        assert!(p.iter().find(|p| p.name == "python").unwrap().url.is_some());
    }

    #[test]
    fn a_lock_without_explicit_is_refused() {
        assert!(parse_lock("https://x.example/noarch/a-1-0.conda\n", 1).is_err());
    }
}
