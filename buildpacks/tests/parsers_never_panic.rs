//! Property tests: the parsers, and planning as a whole, never panic on arbitrary input.

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

use kiln_buildpacks::parse::{
    apt, conda_env, dockerfile, julia, pipfile, pyproject, requirements, runtime,
};
use kiln_buildpacks::{PlanOptions, RenderOptions};
use proptest::prelude::*;

/// Text that looks a little like configuration: arbitrary strings mixed with the characters and
/// keywords the parsers care about.
fn config_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9=<>~^!.,: \\-\\[\\]{}\"'#@/\\n]{0,200}",
        prop::collection::vec(
            prop_oneof![
                Just("python".to_string()),
                Just("r-".to_string()),
                Just("-".to_string()),
                Just("=".to_string()),
                Just("[project]\n".to_string()),
                Just("dependencies".to_string()),
                Just("pip:".to_string()),
                Just("\n  - ".to_string()),
                Just("requires-python = ".to_string()),
                Just("[compat]\njulia = ".to_string()),
                "[0-9.]{0,8}",
                any::<String>(),
            ],
            0..20,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn text_parsers_never_panic(text in config_like()) {
        let _ = runtime::parse("runtime.txt", &text);
        let _ = apt::parse("apt.txt", &text);
        let _ = requirements::local_reference(&text);
        if let Ok(env) = conda_env::parse("environment.yml", &text) {
            let _ = (env.python(), env.has_r(), env.r_base());
        }
        if let Ok(p) = pyproject::parse("pyproject.toml", &text)
            && let Some(spec) = p.requires_python
            && let Ok(specs) = pyproject::specifiers("pyproject.toml", &spec)
        {
            let _ = pyproject::admits(&specs, "3.11");
        }
        let _ = pipfile::parse(Some(("Pipfile", &text)), Some(("Pipfile.lock", &text)));
        if let Ok(project) = julia::parse("Project.toml", &text) {
            let _ = julia::select("Project.toml", project.compat.as_deref().unwrap_or("1"), &["1.11.7"]);
        }
        let _ = julia::select("Project.toml", &text, &["1.11.7", "0.1"]);
        let _ = dockerfile::is_legacy_binder(&text);
    }

    #[test]
    fn planning_never_panics(
        files in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "requirements.txt", "environment.yml", "runtime.txt", "apt.txt", "pyproject.toml",
                    "Pipfile", "Pipfile.lock", "Project.toml", "install.R", "DESCRIPTION", "uv.lock",
                    "binder/requirements.txt", "binder/runtime.txt", "binder/environment.yml", "setup.py",
                ]),
                prop_oneof![config_like().prop_map(String::into_bytes), prop::collection::vec(any::<u8>(), 0..64)],
            ),
            0..6,
        )
    ) {
        let dir = tempfile::tempdir().unwrap();
        for (path, bytes) in &files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        if let Ok(plan) = kiln_buildpacks::plan(dir.path(), &PlanOptions::default()) {
            prop_assert!(!plan.buildpacks.is_empty());
            for buildkit in [true, false] {
                let rendered = kiln_buildpacks::dockerfile(&plan, &RenderOptions { buildkit, ..RenderOptions::default() });
                prop_assert!(rendered.is_ok());
            }
            let _ = kiln_buildpacks::describe(&plan);
        }
    }
}
