//! `environment.yml`: channels, dependencies and the `pip:` section.

use serde::Deserialize;

use crate::error::PlanError;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CondaEnv {
    pub channels: Vec<String>,
    /// Conda dependency specs, as written.
    pub dependencies: Vec<String>,
    /// The `pip:` section's requirement lines.
    pub pip: Vec<String>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    dependencies: Option<Vec<Dependency>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Dependency {
    Spec(String),
    Pip { pip: Vec<String> },
}

pub fn parse(path: &str, text: &str) -> Result<CondaEnv, PlanError> {
    if text.trim().is_empty() {
        return Ok(CondaEnv::default());
    }
    let raw: Raw = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((1, 1));
        PlanError::Syntax {
            path: path.to_string(),
            format: "YAML",
            line: line.max(1),
            column: column.max(1),
            message: yaml_message(&e.to_string()),
        }
    })?;
    let mut env = CondaEnv {
        channels: raw.channels.unwrap_or_default(),
        ..CondaEnv::default()
    };
    for dependency in raw.dependencies.unwrap_or_default() {
        match dependency {
            Dependency::Spec(spec) => env.dependencies.push(spec.trim().to_string()),
            Dependency::Pip { pip } => env.pip.extend(pip),
        }
    }
    Ok(env)
}

/// The parser's message without its own "error: line L column C:" prefix (kiln prints the position).
fn yaml_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error:").unwrap_or(first).trim();
    match first
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((position, rest)) if position.contains("column") => rest.to_string(),
        _ => first.to_string(),
    }
}

impl CondaEnv {
    /// The Python `X.Y` that the dependencies pin (`python=3.12`, `python==3.12.1`, `python 3.12`);
    /// `Some(None)` for an unpinned or major-only `python`, `None` when Python is not listed.
    pub fn python(&self) -> Option<Option<String>> {
        self.dependencies.iter().find_map(|spec| {
            let name_end = spec
                .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
                .unwrap_or(spec.len());
            if &spec[..name_end] != "python" {
                return None;
            }
            let version: String = spec[name_end..]
                .trim_start_matches(|c: char| c == '=' || c.is_whitespace())
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = version.split('.').filter(|p| !p.is_empty());
            Some(match (parts.next(), parts.next()) {
                (Some(major), Some(minor)) => Some(format!("{major}.{minor}")),
                _ => None,
            })
        })
    }

    /// Whether any dependency is an R package (`r-…`), as repo2docker checks.
    pub fn has_r(&self) -> bool {
        self.dependencies.iter().any(|d| d.starts_with("r-"))
    }

    /// The `r-base` version pinned, if any.
    pub fn r_base(&self) -> Option<String> {
        self.dependencies.iter().find_map(|d| {
            d.strip_prefix("r-base")
                .filter(|rest| rest.starts_with(['=', ' ', '>', '<']))
                .map(|rest| rest.trim_start_matches(['=', ' ']).to_string())
        })
    }

    /// Whether a package is listed (by name, any version).
    pub fn lists(&self, name: &str) -> bool {
        self.dependencies.iter().any(|d| {
            d.strip_prefix(name).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with(['=', ' ', '>', '<', '!', '~'])
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let env = parse(
            "environment.yml",
            "name: x\nchannels: [conda-forge]\ndependencies:\n  - python=3.12\n  - numpy\n  - r-ggplot2\n  - pip:\n    - requests\n",
        )
        .unwrap();
        assert_eq!(env.channels, ["conda-forge"]);
        assert_eq!(env.python(), Some(Some("3.12".into())));
        assert_eq!(env.pip, ["requests"]);
        assert!(env.has_r());
        assert!(env.lists("numpy"));
        assert!(!env.lists("num"));
    }

    #[test]
    fn python_forms() {
        let py = |s: &str| {
            parse("e.yml", &format!("dependencies: [\"{s}\"]"))
                .unwrap()
                .python()
        };
        assert_eq!(py("python==3.10.4"), Some(Some("3.10".into())));
        assert_eq!(py("python 3.9"), Some(Some("3.9".into())));
        assert_eq!(py("python=3"), Some(None));
        assert_eq!(py("python"), Some(None));
        assert_eq!(py("python-dateutil"), None);
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("environment.yml", "dependencies:\n  - numpy\n   - bad: [\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("environment.yml:"), "{msg}");
        assert!(msg.contains("invalid YAML"), "{msg}");
    }
}
