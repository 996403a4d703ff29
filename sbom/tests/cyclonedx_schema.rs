//! The CycloneDX SBOM of a record holding every manager is valid CycloneDX 1.6, as the official
//! JSON schema says (cyclonedx-python-lib's strict validator, which ships the schemas). The
//! validator lives in a venv that `bash sbom/tests/make-validator.sh` makes.

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_sbom::{BaseImage, ImageMeta, Source, parse_collected, to_cyclonedx};

const COLLECTED: &str = include_str!("fixtures/every-manager.collected");

fn venv_python() -> PathBuf {
    let venv = std::env::var("KILN_CYCLONEDX_VENV")
        .unwrap_or_else(|_| "/var/cache/kiln-cyclonedx/venv".to_string());
    let python = Path::new(&venv).join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import cyclonedx.validation.json"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ready,
        "the CycloneDX validator is missing from {venv}; make it with: bash {}/tests/make-validator.sh",
        env!("CARGO_MANIFEST_DIR")
    );
    python
}

/// Validate `bom`; Err with the validator's message.
fn validate(bom: &[u8]) -> Result<(), String> {
    let python = venv_python();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sbom.cdx.json");
    std::fs::write(&file, bom).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate-cyclonedx.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&file)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn meta() -> ImageMeta {
    ImageMeta {
        kiln_version: "0.1.0".into(),
        source: Source {
            url: Some("https://git.example.org/lab/analysis.git".into()),
            commit: Some("1479e02c8d4b1f7e9a3c5d6e7f8091a2b3c4d5e6".into()),
            content_hash: None,
            commit_time: Some("2026-03-01T12:00:00+01:00".into()),
        },
        image: Some("127.0.0.1:5000/binder-analysis-1a2b3c:1479e02c8d4b".into()),
        base_image: Some(BaseImage {
            name: "127.0.0.1:5000/kiln/base:bookworm".into(),
            digest: Some(
                "sha256:1111111111111111111111111111111111111111111111111111111111111111".into(),
            ),
        }),
        environment_key: Some("sha256:22".into()),
    }
}

#[test]
fn the_sbom_of_every_manager_is_valid_cyclonedx_1_6() {
    let record = parse_collected(COLLECTED, meta()).unwrap();
    let bom = to_cyclonedx(&record).unwrap();
    if let Err(e) = validate(&bom) {
        panic!("{e}\n{}", String::from_utf8_lossy(&bom));
    }
    let v: serde_json::Value = serde_json::from_slice(&bom).unwrap();
    assert_eq!(v["specVersion"], "1.6");
    assert_eq!(
        v["metadata"]["timestamp"], "2026-03-01T11:00:00Z",
        "the commit time, in UTC"
    );
    assert_eq!(v["metadata"]["tools"]["components"][0]["name"], "kiln");
    assert_eq!(v["metadata"]["component"]["type"], "container");
    let components = v["components"].as_array().unwrap();
    // every package, the operating system and the base image
    assert_eq!(components.len(), record.entries().len() + 2);
    let base = components
        .iter()
        .find(|c| c["bom-ref"] == "kiln:base-image")
        .unwrap();
    assert_eq!(base["type"], "container");
    assert_eq!(
        base["hashes"][0]["content"],
        "1111111111111111111111111111111111111111111111111111111111111111"
    );
    let purls: Vec<&str> = components
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    for prefix in [
        "pkg:deb/debian/bash@",
        "pkg:pypi/numpy@1.26.4",
        "pkg:conda/python@3.12.7?build=",
        "pkg:cran/cli@3.6.3",
        "pkg:julia/IJulia@1.24.2?uuid=",
        "pkg:npm/configurable-http-proxy@4.6.2",
        "pkg:oci/base@sha256:",
    ] {
        assert!(
            purls.iter().any(|p| p.starts_with(prefix)),
            "no {prefix}… in {purls:?}"
        );
    }
    let refs: std::collections::BTreeSet<&str> = components
        .iter()
        .filter_map(|c| c["bom-ref"].as_str())
        .collect();
    assert_eq!(refs.len(), components.len(), "bom-refs are unique");
}

#[test]
fn the_same_record_gives_the_same_sbom_and_serial_number() {
    let record = parse_collected(COLLECTED, meta()).unwrap();
    let (a, b) = (
        to_cyclonedx(&record).unwrap(),
        to_cyclonedx(&record).unwrap(),
    );
    assert_eq!(a, b);
    let mut other = record.clone();
    other.npm.clear();
    let c = to_cyclonedx(&other).unwrap();
    let serial = |bytes: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(bytes).unwrap()["serialNumber"].clone()
    };
    assert_ne!(
        serial(&a),
        serial(&c),
        "another record, another serial number"
    );
}

#[test]
fn the_validator_refuses_an_invalid_sbom() {
    // Guards the test above: a validator that accepted anything would prove nothing.
    let record = parse_collected(COLLECTED, meta()).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&to_cyclonedx(&record).unwrap()).unwrap();
    v["serialNumber"] = "not-a-urn".into();
    assert!(validate(&serde_json::to_vec(&v).unwrap()).is_err());
    let mut v: serde_json::Value = serde_json::from_slice(&to_cyclonedx(&record).unwrap()).unwrap();
    v["components"][0]["colour"] = "blue".into();
    assert!(
        validate(&serde_json::to_vec(&v).unwrap()).is_err(),
        "strict: unknown fields"
    );
}
