//! The `npm` section: `npm ls -g --json --depth=0`, `{"dependencies": {NAME: {"version"}}}`.

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::error::SbomError;
use crate::record::NpmPackage;

#[derive(Deserialize)]
struct Ls {
    #[serde(default)]
    dependencies: BTreeMap<String, Dependency>,
}

#[derive(Deserialize)]
struct Dependency {
    #[serde(default)]
    version: Option<String>,
}

/// The global packages that have a version (a missing or unresolved one has none).
pub fn parse(text: &str) -> Result<Vec<NpmPackage>, SbomError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let ls: Ls = serde_json::from_str(text)
        .map_err(|e| SbomError::parse("npm", None, format!("invalid JSON: {e}")))?;
    Ok(ls
        .dependencies
        .into_iter()
        .filter_map(|(name, d)| d.version.map(|version| NpmPackage { name, version }))
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn npm_ls_json_gives_global_packages() {
        let text = r#"{
  "name": "lib",
  "dependencies": {
    "@jupyterlab/builder": { "version": "4.2.5", "overridden": false },
    "configurable-http-proxy": { "version": "4.6.2", "overridden": false },
    "broken": { "missing": true }
  }
}"#;
        let p = super::parse(text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "@jupyterlab/builder");
        assert_eq!(p[1].version, "4.6.2");
    }
}
