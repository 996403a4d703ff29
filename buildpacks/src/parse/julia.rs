//! `Project.toml`: the Julia version from `[compat] julia`, with Pkg's compat rules
//! (`1.6` and `^1.6` mean `[1.6.0, 2.0.0)`, `~1.6` means `[1.6.0, 1.7.0)`, `=1.6.2` is exact,
//! `>=`/`<` bounds and `a - b` ranges; entries separated by commas are alternatives).

use serde::Deserialize;

use crate::error::PlanError;
use crate::parse::toml_document;

#[derive(Deserialize)]
struct Project {
    #[serde(default)]
    compat: toml::Table,
    #[serde(default)]
    sources: toml::Table,
}

/// What the project file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JuliaProject {
    pub compat: Option<String>,
    /// `[sources]` with local paths: instantiating needs the repository.
    pub has_sources: bool,
}

pub fn parse(path: &str, text: &str) -> Result<JuliaProject, PlanError> {
    let project: Project = toml_document(path, text)?;
    let compat = match project.compat.get("julia") {
        None => None,
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(PlanError::invalid(
                path,
                "[compat] julia must be a string such as \"1.10\"",
            ));
        }
    };
    Ok(JuliaProject {
        compat,
        has_sources: !project.sources.is_empty(),
    })
}

type V = (u64, u64, u64);

/// The newest of `versions` (newest first) that satisfies the compat string.
pub fn select<'a>(path: &str, compat: &str, versions: &[&'a str]) -> Result<&'a str, PlanError> {
    let ranges = compat
        .split(',')
        .map(|entry| range(entry.trim()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            PlanError::invalid(
                path,
                format!("[compat] julia = {compat:?} is not a Julia version specifier"),
            )
        })?;
    versions
        .iter()
        .copied()
        .find(|v| parse_version(v).is_some_and(|v| ranges.iter().any(|(lo, hi)| *lo <= v && v < *hi)))
        .ok_or_else(|| {
            PlanError::invalid(
                path,
                format!(
                    "[compat] julia = {compat:?} matches none of the Julia releases kiln can install ({}{})",
                    versions.iter().take(8).copied().collect::<Vec<_>>().join(", "),
                    if versions.len() > 8 { format!(", ... {} in all", versions.len()) } else { String::new() }
                ),
            )
        })
}

fn parse_version(v: &str) -> Option<V> {
    let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().unwrap_or(Some(0))?;
    let patch = parts.next().unwrap_or(Some(0))?;
    parts.next().is_none().then_some((major, minor, patch))
}

/// Number of components given (1, 2 or 3).
fn precision(v: &str) -> usize {
    v.split('.').count()
}

fn range(entry: &str) -> Option<(V, V)> {
    const MAX: V = (u64::MAX, 0, 0);
    if let Some((lo, hi)) = entry.split_once(" - ") {
        let hi_t = hi.trim();
        let hiv = parse_version(hi_t)?;
        let upper = match precision(hi_t) {
            1 => (hiv.0 + 1, 0, 0),
            2 => (hiv.0, hiv.1 + 1, 0),
            _ => (hiv.0, hiv.1, hiv.2 + 1),
        };
        return Some((parse_version(lo.trim())?, upper));
    }
    if let Some(v) = entry.strip_prefix(">=") {
        return Some((parse_version(v.trim())?, MAX));
    }
    if let Some(v) = entry.strip_prefix('<') {
        return Some(((0, 0, 0), parse_version(v.trim())?));
    }
    if let Some(v) = entry.strip_prefix('=') {
        let v = parse_version(v.trim())?;
        return Some((v, (v.0, v.1, v.2 + 1)));
    }
    if let Some(t) = entry.strip_prefix('~') {
        let t = t.trim();
        let v = parse_version(t)?;
        let upper = if precision(t) == 1 {
            (v.0 + 1, 0, 0)
        } else {
            (v.0, v.1 + 1, 0)
        };
        return Some((v, upper));
    }
    let t = entry.strip_prefix('^').unwrap_or(entry).trim();
    let v = parse_version(t)?;
    let upper = match (v, precision(t)) {
        ((0, 0, _), 3) => (0, 0, v.2 + 1),
        ((0, 0, _), 2) | ((0, 0, _), 1) => (0, 1, 0),
        ((0, _, _), _) => (0, v.1 + 1, 0),
        _ => (v.0 + 1, 0, 0),
    };
    Some((v, upper))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSIONS: &[&str] = &["1.12.1", "1.11.7", "1.10.10", "1.6.7"];

    #[test]
    fn compat() {
        assert_eq!(select("p", "1.6", VERSIONS).unwrap(), "1.12.1");
        assert_eq!(select("p", "~1.10", VERSIONS).unwrap(), "1.10.10");
        assert_eq!(select("p", "=1.6.7", VERSIONS).unwrap(), "1.6.7");
        assert_eq!(select("p", "1.6 - 1.11", VERSIONS).unwrap(), "1.11.7");
        assert_eq!(select("p", "~1.6, ~1.10", VERSIONS).unwrap(), "1.10.10");
        assert!(select("p", "2", VERSIONS).is_err());
        assert!(select("p", "one", VERSIONS).is_err());
    }
}
