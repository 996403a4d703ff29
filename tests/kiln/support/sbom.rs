//! Checking an image's SBOM against the official CycloneDX 1.6 schema (cyclonedx-python-lib's
//! strict validator, in the venv `bash sbom/tests/make-validator.sh` makes) and against what the
//! image itself says it has installed.

use std::path::Path;
use std::process::Command;

use super::docker;

/// Fail unless `bom` is valid CycloneDX 1.6.
pub fn assert_valid_cyclonedx(bom: &[u8]) {
    let venv = std::env::var("KILN_CYCLONEDX_VENV")
        .unwrap_or_else(|_| "/var/cache/kiln-cyclonedx/venv".to_string());
    let python = Path::new(&venv).join("bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sbom/tests/validate-cyclonedx.py");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sbom.cdx.json");
    std::fs::write(&file, bom).unwrap();
    let out = Command::new(&python)
        .arg(&script)
        .arg(&file)
        .output()
        .unwrap_or_else(|_| {
            panic!("the CycloneDX validator is missing from {venv}; make it with: bash sbom/tests/make-validator.sh")
        });
    assert!(
        out.status.success(),
        "the SBOM is not valid CycloneDX 1.6: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The (name, version) of every component of `bom` of one manager (`deb`, `python`, `conda`...,
/// as kiln's `bom-ref`s say: a package from a local folder has no package URL).
pub fn components(bom: &serde_json::Value, manager: &str) -> Vec<(String, String)> {
    bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["bom-ref"]
                .as_str()
                .is_some_and(|p| p.starts_with(&format!("kiln:{manager}:")))
        })
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["version"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Ask `image` (a shell in it, no network) what `script` prints.
fn ask(image: &str, script: &str) -> String {
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        script,
    ]);
    assert!(
        out.status.success(),
        "{image}: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Python modules a `verify` script imports (`import x`, `from x import`), top-level names only.
fn imported_modules(verify: &str) -> Vec<String> {
    let mut modules = Vec::new();
    let tokens: Vec<&str> = verify
        .split(|c: char| c.is_whitespace() || c == ';' || c == '\'' || c == '"' || c == ',')
        .collect();
    for (i, pair) in tokens.windows(2).enumerate() {
        // In `from a import b`, `b` is not a module of its own.
        let after_from = i >= 2 && tokens[i - 2] == "from";
        if (pair[0] == "import" && !after_from) || pair[0] == "from" {
            let module = pair[1].split('.').next().unwrap_or_default();
            if !module.is_empty() && !modules.iter().any(|m| m == module) {
                modules.push(module.to_string());
            }
        }
    }
    modules
}

/// Commands a `verify` script looks for (`command -v x`).
fn commands(verify: &str) -> Vec<String> {
    let tokens: Vec<&str> = verify.split_whitespace().collect();
    tokens
        .windows(3)
        .filter(|w| w[0] == "command" && w[1] == "-v")
        .map(|w| {
            w[2].trim_matches(|c: char| !c.is_alphanumeric())
                .to_string()
        })
        .filter(|c| !c.is_empty())
        .collect()
}

/// The SBOM lists every Python distribution that provides a module `verify` imports, and every
/// Debian package that provides a command it looks for, each with the version the image has
/// installed (asked of the image itself: `importlib.metadata` for the module's distribution,
/// `dpkg -S` and `dpkg-query` for the command's package). Returns how many were checked.
pub fn assert_lists_what_verify_uses(image: &str, verify: &str, bom: &serde_json::Value) -> usize {
    let mut checked = 0;
    let pypi = components(bom, "python");
    let modules = imported_modules(verify);
    if !modules.is_empty() {
        // The distributions that provide each importable module, and their versions.
        let script = format!(
            "python -c 'import importlib.metadata as m, importlib.util as u\nd = m.packages_distributions()\nfor n in {modules:?}:\n    if u.find_spec(n) is None or n not in d: continue\n    for dist in d[n]: print(n, dist, m.version(dist))'"
        );
        for line in ask(image, &script).lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [module, dist, version] = parts[..] else {
                continue;
            };
            let normal = |s: &str| s.to_lowercase().replace(['_', '.'], "-");
            assert!(
                pypi.iter()
                    .any(|(n, v)| normal(n) == normal(dist) && v == version),
                "{image}: verify imports {module} from {dist} {version}, which the SBOM does not list as such: {:?}",
                pypi.iter()
                    .filter(|(n, _)| normal(n) == normal(dist))
                    .collect::<Vec<_>>()
            );
            checked += 1;
        }
    }
    let debs = components(bom, "deb");
    for command in commands(verify) {
        let script = format!(
            "p=$(command -v {command}) && p=$(readlink -f \"$p\") && pkg=$(dpkg -S \"$p\" 2>/dev/null | head -n1 | cut -d: -f1) && [ -n \"$pkg\" ] && echo \"$pkg $(dpkg-query -W -f='${{Version}}' \"$pkg\")\" || true"
        );
        let answer = ask(image, &script);
        let Some((package, version)) = answer.trim().split_once(' ') else {
            continue; // not from a Debian package (a venv's python, say)
        };
        assert!(
            debs.iter().any(|(n, v)| n == package && v == version),
            "{image}: verify uses {command} from the Debian package {package} {version}, which the SBOM does not list as such"
        );
        checked += 1;
    }
    checked
}

#[test]
fn imported_modules_and_commands_are_read_from_a_verify_script() {
    let verify = "#!/bin/sh\npython -c 'import six; assert six.__version__'\npython -c \"from greet.hello import x\"\ncommand -v jq\ncommand -v python | grep -q venv\n";
    assert_eq!(imported_modules(verify), ["six", "greet"]);
    assert_eq!(commands(verify), ["jq", "python"]);
}
