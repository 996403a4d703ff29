//! One snapshot per example repository (plan and Dockerfile), generated from the folder list.

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

use std::path::{Path, PathBuf};

use kiln_buildpacks::{PlanOptions, RenderOptions};
use sha2::{Digest, Sha256};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/repos")
}

/// The plan as JSON with generated file contents replaced by their hash and size, then the Dockerfile.
fn snapshot_text(dir: &Path) -> String {
    match kiln_buildpacks::plan(dir, &PlanOptions::default()) {
        Err(error) => format!("error: {error}\n"),
        Ok(plan) => {
            let mut json = serde_json::to_value(&plan).unwrap();
            if let Some(files) = json
                .pointer_mut("/build/environment/files")
                .and_then(|f| f.as_array_mut())
            {
                for file in files {
                    let content = file["content"].as_str().unwrap().to_string();
                    file["content"] = format!(
                        "sha256:{} ({} bytes)",
                        hex::encode(Sha256::digest(content.as_bytes())),
                        content.len()
                    )
                    .into();
                }
            }
            let dockerfile = kiln_buildpacks::dockerfile(
                &plan,
                &RenderOptions {
                    buildkit: true,
                    ..RenderOptions::default()
                },
            )
            .unwrap();
            format!(
                "{}\n---- Dockerfile ----\n{dockerfile}",
                serde_json::to_string_pretty(&sorted(json)).unwrap()
            )
        }
    }
}

/// The JSON with every object's keys sorted, whatever order serde_json's map keeps (another crate of
/// the workspace, through rattler, enables its `preserve_order` feature).
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

#[test]
fn every_example_matches_its_snapshot() {
    let mut names: Vec<String> = std::fs::read_dir(examples_dir())
        .expect("examples/repos exists")
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(
        names.len() >= 20,
        "expected at least 20 examples, found {}",
        names.len()
    );
    for name in &names {
        let text = snapshot_text(&examples_dir().join(name));
        // Examples named error-* must fail to plan; every other one must plan.
        assert_eq!(
            name.starts_with("error-"),
            text.starts_with("error: "),
            "{name}: {}",
            text.lines().next().unwrap_or_default()
        );
        insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(name.as_str(), text);
        });
    }
}
