//! A `julia` section: a `Manifest.toml` as is. Format 2.0 (Julia 1.7 on) lists packages under
//! `[[deps.NAME]]`; the older format has `[[NAME]]` at the top.

use crate::error::SbomError;
use crate::record::{JuliaEnvironment, JuliaPackage, without_credentials};

pub fn parse(text: &str, manifest: &str) -> Result<JuliaEnvironment, SbomError> {
    let section = format!("julia {manifest}");
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| SbomError::parse(&section, None, e.message().to_string()))?;
    let str_of = |t: &toml::Table, k: &str| t.get(k).and_then(|v| v.as_str()).map(String::from);
    // Format 2.0 has `manifest_format`; without it, a `deps` table of arrays is still 2.0.
    let (julia_version, deps) = match table.get("deps").and_then(|d| d.as_table()) {
        Some(deps)
            if table.contains_key("manifest_format") || deps.values().all(|v| v.is_array()) =>
        {
            (str_of(&table, "julia_version"), deps.clone())
        }
        _ => (None, table.clone()),
    };
    let mut packages = Vec::new();
    for (name, entries) in &deps {
        let Some(entries) = entries.as_array() else {
            continue;
        };
        for entry in entries {
            let Some(entry) = entry.as_table() else {
                continue;
            };
            let Some(uuid) = str_of(entry, "uuid") else {
                return Err(SbomError::parse(
                    &section,
                    None,
                    format!("{name} has no uuid"),
                ));
            };
            packages.push(JuliaPackage {
                name: name.clone(),
                uuid,
                version: str_of(entry, "version"),
                git_tree_sha1: str_of(entry, "git-tree-sha1"),
                repo_url: str_of(entry, "repo-url").map(|u| without_credentials(&u)),
                repo_rev: str_of(entry, "repo-rev"),
                path: str_of(entry, "path"),
            });
        }
    }
    Ok(JuliaEnvironment {
        manifest: manifest.to_string(),
        julia_version,
        packages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape Julia 1.10 writes after `Pkg.add("IJulia")` (shortened).
    const V2: &str = r#"# This file is machine-generated - editing it directly is not advised

julia_version = "1.10.5"
manifest_format = "2.0"
project_hash = "6d7e0a4a0d1c0f6e3d0b8c1e6b9b1f0f7f6c1b1a"

[[deps.Base64]]
uuid = "2a0f44e3-6c83-55bd-87e4-b1978d98bd5f"

[[deps.IJulia]]
deps = ["Base64", "Conda", "Dates"]
git-tree-sha1 = "47ac8cc196b81001a711f4b2c12c97372338f00c"
uuid = "7073ff75-c697-5162-941a-fcdaad2a7d2a"
version = "1.24.2"

[[deps.JSON]]
deps = ["Dates", "Mmap", "Parsers", "Unicode"]
git-tree-sha1 = "31e996f0a15c7b280ba9f76636b3ff9e2ae58c9a"
uuid = "682c06a0-de6a-54ab-a142-c8b1cf79cde6"
version = "0.21.4"

[[deps.Mine]]
path = "."
uuid = "a1b2c3d4-0000-4000-8000-000000000001"
version = "0.1.0"
"#;

    const V1: &str = r#"[[Example]]
git-tree-sha1 = "46e44e869b4d90b96bd8ed1fdcf32244fddfb6cc"
uuid = "7876af07-990d-54b4-ab0e-23690620f79a"
version = "0.5.3"
repo-url = "https://user:pw@git.example.org/Example.jl.git"
repo-rev = "main"
"#;

    #[test]
    fn manifest_v2_gives_versions_uuids_and_tree_hashes() {
        let env = parse(V2, "/home/jovyan/Manifest.toml").unwrap();
        assert_eq!(env.julia_version.as_deref(), Some("1.10.5"));
        assert_eq!(env.packages.len(), 4);
        let ij = env.packages.iter().find(|p| p.name == "IJulia").unwrap();
        assert_eq!(ij.version.as_deref(), Some("1.24.2"));
        assert_eq!(ij.uuid, "7073ff75-c697-5162-941a-fcdaad2a7d2a");
        assert_eq!(
            ij.git_tree_sha1.as_deref(),
            Some("47ac8cc196b81001a711f4b2c12c97372338f00c")
        );
        let b64 = env.packages.iter().find(|p| p.name == "Base64").unwrap();
        assert_eq!(b64.version, None, "a stdlib without a version");
        assert_eq!(
            env.packages
                .iter()
                .find(|p| p.name == "Mine")
                .unwrap()
                .path
                .as_deref(),
            Some(".")
        );
    }

    #[test]
    fn manifest_v1_is_read_too() {
        let env = parse(V1, "/m/Manifest.toml").unwrap();
        assert_eq!(env.packages.len(), 1);
        assert_eq!(env.packages[0].version.as_deref(), Some("0.5.3"));
        assert_eq!(
            env.packages[0].repo_url.as_deref(),
            Some("https://git.example.org/Example.jl.git")
        );
    }

    #[test]
    fn a_broken_manifest_names_its_path() {
        let e = parse("[[deps.X]]\nversion = 1\n", "/m/Manifest.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/m/Manifest.toml") && e.contains("uuid"), "{e}");
    }
}
