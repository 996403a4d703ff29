//! A `python` section: the JSON line of [`crate::collect::PYTHON_SNIPPET`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::SbomError;
use crate::record::{
    DirectUrl, PythonEnvironment, PythonPackage, normalise_python_name, without_credentials,
};

#[derive(Deserialize)]
struct Collected {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    python: Option<String>,
    #[serde(default)]
    implementation: Option<String>,
    #[serde(default)]
    distributions: Vec<Distribution>,
    /// kiln's build-time lock (`kiln-lock.txt` in the prefix), when there is one.
    #[serde(default)]
    lock: Option<String>,
}

#[derive(Deserialize)]
struct Distribution {
    name: String,
    version: String,
    #[serde(default)]
    installer: Option<String>,
    #[serde(default)]
    requested: bool,
    #[serde(default)]
    direct_url: Option<PepDirectUrl>,
}

/// PEP 610's `direct_url.json`.
#[derive(Deserialize)]
struct PepDirectUrl {
    url: String,
    #[serde(default)]
    subdirectory: Option<String>,
    #[serde(default)]
    vcs_info: Option<VcsInfo>,
    #[serde(default)]
    archive_info: Option<ArchiveInfo>,
    #[serde(default)]
    dir_info: Option<DirInfo>,
}

#[derive(Deserialize)]
struct VcsInfo {
    vcs: String,
    #[serde(default)]
    commit_id: Option<String>,
    #[serde(default)]
    requested_revision: Option<String>,
}

#[derive(Deserialize)]
struct ArchiveInfo {
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    /// The older single form, `sha256=<hex>`.
    #[serde(default)]
    hash: Option<String>,
}

#[derive(Deserialize)]
struct DirInfo {
    #[serde(default)]
    editable: bool,
}

/// The environment at `candidate` (the path the script found it at; `sys.prefix` wins when the
/// interpreter reports one).
pub fn parse(text: &str, candidate: &str) -> Result<PythonEnvironment, SbomError> {
    let section = format!("python {candidate}");
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with('{'))
        .ok_or_else(|| SbomError::parse(&section, None, "no JSON line"))?;
    let collected: Collected = serde_json::from_str(line)
        .map_err(|e| SbomError::parse(&section, None, format!("invalid JSON: {e}")))?;
    let mut packages = Vec::new();
    for d in collected.distributions {
        let mut hashes = BTreeMap::new();
        let direct_url = d.direct_url.map(|du| {
            let kind = if du.vcs_info.is_some() {
                "vcs"
            } else if du.archive_info.is_some() {
                "archive"
            } else {
                "dir"
            };
            if let Some(archive) = &du.archive_info {
                for (alg, hex) in &archive.hashes {
                    hashes.insert(alg.to_ascii_lowercase(), hex.to_ascii_lowercase());
                }
                if let Some((alg, hex)) = archive.hash.as_deref().and_then(|h| h.split_once('=')) {
                    hashes
                        .entry(alg.to_ascii_lowercase())
                        .or_insert_with(|| hex.to_ascii_lowercase());
                }
            }
            DirectUrl {
                url: without_credentials(&du.url),
                kind: kind.to_string(),
                vcs: du.vcs_info.as_ref().map(|v| v.vcs.clone()),
                commit_id: du.vcs_info.as_ref().and_then(|v| v.commit_id.clone()),
                requested_revision: du
                    .vcs_info
                    .as_ref()
                    .and_then(|v| v.requested_revision.clone()),
                subdirectory: du.subdirectory,
                editable: du.dir_info.is_some_and(|d| d.editable),
            }
        });
        packages.push(PythonPackage {
            name: normalise_python_name(&d.name),
            version: d.version,
            installer: d.installer.filter(|s| !s.is_empty()),
            requested: d.requested,
            direct_url,
            hashes,
            lock_hashes: Vec::new(),
        });
    }
    let lock = collected.lock.as_deref().map(lock).unwrap_or_default();
    for p in &mut packages {
        if let Some(hashes) = lock.hashes.get(&(p.name.clone(), p.version.clone())) {
            p.lock_hashes = hashes.clone();
        }
    }
    Ok(PythonEnvironment {
        indexes: lock.indexes,
        prefix: if collected.prefix.is_empty() {
            candidate.to_string()
        } else {
            collected.prefix
        },
        python_version: collected.python,
        implementation: collected.implementation,
        packages,
    })
}

/// What kiln's build-time lock (`uv pip compile --generate-hashes` output) says.
#[derive(Default)]
struct Lock {
    /// Index options, in order, without credentials.
    indexes: Vec<String>,
    /// (normalised name, version) to the sha256 hex of every file of that version, sorted.
    hashes: BTreeMap<(String, String), Vec<String>>,
}

/// Read a requirements-format lock: `name==version \` continued by `--hash=sha256:HEX` lines, and
/// index options. Anything else (comments, markers, other options) is skipped.
fn lock(text: &str) -> Lock {
    let mut out = Lock::default();
    let mut logical = String::new();
    let mut lines = Vec::new();
    for raw in text.lines() {
        let line = raw.split(" #").next().unwrap_or_default().trim_end();
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        lines.push(std::mem::take(&mut logical));
    }
    lines.push(logical);
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = words.first() else { continue };
        if first.starts_with('#') {
            continue;
        }
        if [
            "--index-url",
            "--extra-index-url",
            "--find-links",
            "-i",
            "-f",
        ]
        .contains(first)
        {
            if let Some(url) = words.get(1) {
                let option = match *first {
                    "-i" => "--index-url",
                    "-f" => "--find-links",
                    other => other,
                };
                let entry = format!("{option} {}", without_credentials(url));
                if !out.indexes.contains(&entry) {
                    out.indexes.push(entry);
                }
            }
            continue;
        }
        let requirement = first.split(';').next().unwrap_or_default();
        let Some((name, version)) = requirement.split_once("==") else {
            continue;
        };
        let mut hashes: Vec<String> = words
            .iter()
            .filter_map(|w| w.strip_prefix("--hash=sha256:"))
            .map(str::to_ascii_lowercase)
            .collect();
        hashes.sort();
        hashes.dedup();
        if !hashes.is_empty() {
            out.hashes
                .insert((normalise_python_name(name), version.to_string()), hashes);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // What the snippet prints in /srv/venv after `uv pip install` of a requirements file with a
    // wheel URL, a git requirement and `-e .` (shortened).
    const SAMPLE: &str = r#"{"distributions": [{"direct_url": null, "installer": "uv", "name": "numpy", "requested": true, "version": "1.26.4"}, {"direct_url": null, "installer": "uv", "name": "Jupyter_Server", "requested": false, "version": "2.14.2"}, {"direct_url": {"archive_info": {"hash": "sha256=2A9D6B", "hashes": {"sha256": "2A9D6B"}}, "url": "https://files.example.org/six-1.16.0-py2.py3-none-any.whl"}, "installer": "pip", "name": "six", "requested": true, "version": "1.16.0"}, {"direct_url": {"url": "https://deploy:t0ken@git.example.org/lab/tool.git", "vcs_info": {"commit_id": "0123abcd", "requested_revision": "v2", "vcs": "git"}}, "installer": "uv", "name": "tool", "requested": true, "version": "2.0"}, {"direct_url": {"dir_info": {"editable": true}, "url": "file:///home/jovyan"}, "installer": "uv", "name": "mypkg", "requested": true, "version": "0.1"}, {"direct_url": null, "installer": "uv", "name": "numpy", "requested": false, "version": "1.0"}], "implementation": "cpython", "prefix": "/srv/venv", "python": "3.12.7"}"#;

    #[test]
    fn importlib_metadata_json_gives_normalised_distributions() {
        let env = parse(SAMPLE, "/srv/venv").unwrap();
        assert_eq!(env.prefix, "/srv/venv");
        assert_eq!(env.python_version.as_deref(), Some("3.12.7"));
        let names: Vec<&str> = env.packages.iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"jupyter-server"), "{names:?}");
        let six = env.packages.iter().find(|p| p.name == "six").unwrap();
        assert_eq!(six.hashes.get("sha256").map(String::as_str), Some("2a9d6b"));
        assert_eq!(six.direct_url.as_ref().unwrap().kind, "archive");
        let tool = env.packages.iter().find(|p| p.name == "tool").unwrap();
        let du = tool.direct_url.as_ref().unwrap();
        assert_eq!(
            du.url, "https://git.example.org/lab/tool.git",
            "no credentials"
        );
        assert_eq!(du.commit_id.as_deref(), Some("0123abcd"));
        let mine = env.packages.iter().find(|p| p.name == "mypkg").unwrap();
        assert!(mine.direct_url.as_ref().unwrap().editable);
    }

    #[test]
    fn build_time_lock_gives_hashes_and_indexes_without_credentials() {
        let lock = "--index-url https://pypi.org/simple\n--extra-index-url http://deploy:t0ken@127.0.0.1:9/simple/\n\nnumpy==1.26.4 \\\n    --hash=sha256:BBB \\\n    --hash=sha256:aaa\n    # via -r x.in\njupyter-server==2.14.2 \\\n    --hash=sha256:ccc\nsix==1.0\n";
        let with_lock = SAMPLE.replacen(
            "{",
            &format!("{{\"lock\": {}, ", serde_json::to_string(lock).unwrap()),
            1,
        );
        let env = parse(&with_lock, "/srv/venv").unwrap();
        assert_eq!(
            env.indexes,
            [
                "--index-url https://pypi.org/simple",
                "--extra-index-url http://127.0.0.1:9/simple/"
            ]
        );
        let numpy = env.packages.iter().find(|p| p.name == "numpy").unwrap();
        assert_eq!(numpy.lock_hashes, ["aaa", "bbb"]);
        let server = env
            .packages
            .iter()
            .find(|p| p.name == "jupyter-server")
            .unwrap();
        assert_eq!(server.lock_hashes, ["ccc"]);
        // A version the lock does not name gets no hashes from it.
        let six = env.packages.iter().find(|p| p.name == "six").unwrap();
        assert!(six.lock_hashes.is_empty());
        assert!(!env.indexes.iter().any(|i| i.contains("t0ken")));
    }

    #[test]
    fn python_output_without_json_is_an_error() {
        let e = parse("Traceback ...", "/srv/venv").unwrap_err().to_string();
        assert!(
            e.contains("python /srv/venv") && e.contains("no JSON"),
            "{e}"
        );
    }
}
