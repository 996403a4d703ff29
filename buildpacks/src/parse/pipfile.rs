//! `Pipfile` and `Pipfile.lock`: the Python version they ask for, and whether they install local paths.

use serde::Deserialize;

use crate::error::PlanError;
use crate::parse::{json_document, toml_document};

#[derive(Deserialize)]
struct Pipfile {
    requires: Option<Requires>,
    #[serde(default)]
    packages: toml::Table,
    #[serde(default, rename = "dev-packages")]
    dev_packages: toml::Table,
}

#[derive(Deserialize)]
struct Requires {
    python_full_version: Option<String>,
    python_version: Option<String>,
}

#[derive(Deserialize)]
struct Lock {
    #[serde(rename = "_meta")]
    meta: Option<LockMeta>,
}

#[derive(Deserialize)]
struct LockMeta {
    requires: Option<LockRequires>,
}

#[derive(Deserialize)]
struct LockRequires {
    python_full_version: Option<String>,
    python_version: Option<String>,
}

/// What the Pipfile and its lock say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PipfileInfo {
    /// `X.Y` from the lock, else from the Pipfile.
    pub python: Option<String>,
    /// The Pipfile installs a local path (`path = "."`), so it needs the repository.
    pub installs_local_path: bool,
}

pub fn parse(
    pipfile: Option<(&str, &str)>,
    lock: Option<(&str, &str)>,
) -> Result<PipfileInfo, PlanError> {
    let mut info = PipfileInfo::default();
    if let Some((path, text)) = lock {
        let lock: Lock = json_document(path, text)?;
        if let Some(r) = lock.meta.and_then(|m| m.requires) {
            info.python = minor(r.python_full_version.or(r.python_version));
        }
    }
    if let Some((path, text)) = pipfile {
        let file: Pipfile = toml_document(path, text)?;
        if info.python.is_none()
            && let Some(r) = file.requires
        {
            info.python = minor(r.python_full_version.or(r.python_version));
        }
        info.installs_local_path = file
            .packages
            .values()
            .chain(file.dev_packages.values())
            .any(|v| v.as_table().is_some_and(|t| t.contains_key("path")));
    }
    Ok(info)
}

fn minor(version: Option<String>) -> Option<String> {
    let version = version?;
    let mut parts = version.trim().split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor))
            if major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
                && !minor.is_empty() =>
        {
            Some(format!("{major}.{minor}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let info = parse(
            Some(("Pipfile", "[packages]\nrequests='*'\nmine={path='.', editable=true}\n[requires]\npython_version='3.10'\n")),
            Some(("Pipfile.lock", r#"{"_meta": {"requires": {"python_full_version": "3.12.1"}}}"#)),
        )
        .unwrap();
        assert_eq!(info.python.as_deref(), Some("3.12"));
        assert!(info.installs_local_path);
    }
}
