//! `pyproject.toml`: whether it describes an installable package, its dependencies and `requires-python`.

use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use serde::Deserialize;

use crate::error::PlanError;
use crate::parse::toml_document;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pyproject {
    pub has_project: bool,
    pub has_build_system: bool,
    pub dependencies: Vec<String>,
    pub requires_python: Option<String>,
    /// `dependencies` is listed in `[project].dynamic`: only a build of the package knows them.
    pub dynamic_dependencies: bool,
}

#[derive(Deserialize)]
struct Raw {
    project: Option<Project>,
    #[serde(rename = "build-system")]
    build_system: Option<toml::Table>,
}

#[derive(Deserialize)]
struct Project {
    #[serde(default)]
    dependencies: Vec<String>,
    #[serde(rename = "requires-python")]
    requires_python: Option<String>,
    #[serde(default)]
    dynamic: Vec<String>,
}

pub fn parse(path: &str, text: &str) -> Result<Pyproject, PlanError> {
    let raw: Raw = toml_document(path, text)?;
    Ok(Pyproject {
        has_project: raw.project.is_some(),
        has_build_system: raw.build_system.is_some(),
        dependencies: raw
            .project
            .as_ref()
            .map(|p| p.dependencies.clone())
            .unwrap_or_default(),
        dynamic_dependencies: raw
            .project
            .as_ref()
            .is_some_and(|p| p.dynamic.iter().any(|d| d == "dependencies")),
        requires_python: raw.project.and_then(|p| p.requires_python),
    })
}

impl Pyproject {
    /// An installable package, by repo2docker's rule: both `[project]` and `[build-system]`.
    pub fn is_package(&self) -> bool {
        self.has_project && self.has_build_system
    }
}

/// Parse a `requires-python` specifier set.
pub fn specifiers(path: &str, spec: &str) -> Result<VersionSpecifiers, PlanError> {
    VersionSpecifiers::from_str(spec).map_err(|e| {
        PlanError::invalid(
            path,
            format!("requires-python {spec:?} is not a valid version specifier: {e}"),
        )
    })
}

/// Whether Python `X.Y` satisfies the specifiers (checked as `X.Y.0` and `X.Y.99`, so that
/// `>=3.11.4` admits 3.11 and `<3.12.1` admits 3.12).
pub fn admits(specs: &VersionSpecifiers, minor: &str) -> bool {
    [format!("{minor}.0"), format!("{minor}.99")]
        .iter()
        .any(|v| Version::from_str(v).is_ok_and(|v| specs.contains(&v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_and_deps() {
        let p = parse(
            "pyproject.toml",
            "[project]\nname='x'\nrequires-python='>=3.11,<3.13'\ndependencies=['numpy']\n[build-system]\nrequires=['hatchling']\n",
        )
        .unwrap();
        assert!(p.is_package());
        assert_eq!(p.dependencies, ["numpy"]);
        let s = specifiers("p", p.requires_python.as_deref().unwrap()).unwrap();
        assert!(admits(&s, "3.12"));
        assert!(!admits(&s, "3.13"));
        assert!(!admits(&s, "3.10"));
    }

    #[test]
    fn error_position() {
        let err = parse("pyproject.toml", "[project]\nname = \n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("pyproject.toml:2:"), "{err}");
    }
}
