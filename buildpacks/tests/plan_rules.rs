//! Behaviour of planning on repositories made by the tests: precedence, the environment key,
//! untrusted content, and large trees.

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

use std::fs;
use std::path::Path;

use kiln_buildpacks::{Build, Buildpack, PlanError, PlanOptions, RenderOptions};

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
}

fn plan_of(files: &[(&str, &str)]) -> Result<kiln_buildpacks::BuildPlan, PlanError> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), files);
    kiln_buildpacks::plan(dir.path(), &PlanOptions::default())
}

fn names(plan: &kiln_buildpacks::BuildPlan) -> Vec<Buildpack> {
    plan.buildpacks.iter().map(|b| b.name).collect()
}

#[test]
fn precedence_follows_repo2docker() {
    let all = [
        ("Dockerfile", "FROM x\n"),
        ("Project.toml", "[deps]\n"),
        ("default.nix", "{}\n"),
        ("runtime.txt", "r-4.2-2024-01-01\n"),
        ("environment.yml", "dependencies: [numpy]\n"),
        ("Pipfile", "[packages]\n"),
        ("requirements.txt", "six\n"),
    ];
    let expected = [
        Buildpack::Dockerfile,
        Buildpack::Julia,
        Buildpack::Nix,
        Buildpack::R,
        Buildpack::Conda,
        Buildpack::Pipfile,
        Buildpack::Python,
    ];
    for (i, primary) in expected.iter().enumerate() {
        let plan = plan_of(&all[i..]).unwrap();
        assert_eq!(plan.primary(), *primary, "with files {:?}", &all[i..]);
    }
    // Only the buildpacks whose files are honoured are listed beside the primary one.
    let r = plan_of(&[("install.R", "1\n"), ("requirements.txt", "six\n")]).unwrap();
    assert_eq!(names(&r), [Buildpack::R, Buildpack::Python]);
    let conda = plan_of(&[
        ("environment.yml", "dependencies: [r-base]\n"),
        ("requirements.txt", "six\n"),
    ])
    .unwrap();
    assert_eq!(names(&conda), [Buildpack::Conda, Buildpack::R]);
    assert!(
        conda
            .decisions
            .iter()
            .any(|d| d.topic == "requirements.txt" && d.value == "ignored")
    );
}

#[test]
fn environment_key_ignores_code_and_follows_environment_files() {
    let base = [
        ("requirements.txt", "six==1.16.0\n"),
        ("analysis.py", "print(1)\n"),
    ];
    let a = plan_of(&base).unwrap();
    let code_change = plan_of(&[
        base[0],
        ("analysis.py", "print(2)\n"),
        ("new.py", "x = 1\n"),
    ])
    .unwrap();
    let other_repo = plan_of(&[base[0], ("README.md", "another repository\n")]).unwrap();
    let env_change = plan_of(&[("requirements.txt", "six==1.17.0\n"), base[1]]).unwrap();
    assert!(a.environment_key.as_deref().unwrap().starts_with("sha256:"));
    assert_eq!(a.environment_key, code_change.environment_key);
    assert_eq!(a.environment_key, other_repo.environment_key);
    assert_ne!(a.environment_key, env_change.environment_key);
    // postBuild runs after the copy: it does not change the environment.
    let with_post_build = plan_of(&[base[0], ("postBuild", "#!/bin/sh\necho hi\n")]).unwrap();
    assert_eq!(a.environment_key, with_post_build.environment_key);
    // apt.txt is part of the environment.
    let with_apt = plan_of(&[base[0], ("apt.txt", "jq\n")]).unwrap();
    assert_ne!(a.environment_key, with_apt.environment_key);
    // The base image is too.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &base);
    let other_base = kiln_buildpacks::plan(
        dir.path(),
        &PlanOptions {
            base_image: "example/other:1".into(),
            ..PlanOptions::default()
        },
    )
    .unwrap();
    assert_ne!(a.environment_key, other_base.environment_key);
}

#[test]
fn dockerfile_repositories_have_no_environment_key() {
    let plan = plan_of(&[
        ("Dockerfile", "FROM debian\n"),
        ("requirements.txt", "six\n"),
    ])
    .unwrap();
    assert_eq!(plan.environment_key, None);
    assert!(matches!(plan.build, Build::Dockerfile(_)));
    let rendered = kiln_buildpacks::dockerfile(&plan, &RenderOptions::default()).unwrap();
    assert_eq!(rendered, "FROM debian\n");
}

#[test]
fn layer_order_is_cache_friendly() {
    let plan = plan_of(&[
        ("apt.txt", "jq\n"),
        ("requirements.txt", "six\n"),
        ("setup.py", "from setuptools import setup; setup()\n"),
        ("postBuild", "#!/bin/sh\n"),
    ])
    .unwrap();
    let dockerfile = kiln_buildpacks::dockerfile(&plan, &RenderOptions::default()).unwrap();
    let at = |needle: &str| {
        dockerfile
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} missing:\n{dockerfile}"))
    };
    let order = [
        "FROM ",
        "-- jq",
        "src/requirements.txt",
        "COPY --chown=1000:1000 src/ /home/jovyan/",
        "uv pip install --python /srv/venv/bin/python /home/jovyan\n",
        "RUN /home/jovyan/postBuild",
        "LABEL ",
    ];
    for pair in order.windows(2) {
        assert!(
            at(pair[0]) < at(pair[1]),
            "{} must come before {}\n{dockerfile}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn untrusted_strings_are_quoted_or_rejected() {
    let err = plan_of(&[("apt.txt", "jq\n$(touch /tmp/pwned)\n")]).unwrap_err();
    assert!(err.to_string().starts_with("apt.txt:2:"), "{err}");
    // A requirement line with shell characters is data for uv, never shell syntax: the file is
    // passed by path, so its content never reaches the Dockerfile.
    let plan = plan_of(&[("requirements.txt", "six; touch /tmp/x `id`\n")]).unwrap();
    let dockerfile = kiln_buildpacks::dockerfile(&plan, &RenderOptions::default()).unwrap();
    assert!(!dockerfile.contains("touch"), "{dockerfile}");
    // Operator-provided Jupyter specs with shell characters are quoted.
    let dir = tempfile::tempdir().unwrap();
    let opts = PlanOptions {
        jupyter_packages: vec!["jupyterlab>=4; echo hi".into()],
        ..PlanOptions::default()
    };
    let plan = kiln_buildpacks::plan(dir.path(), &opts).unwrap();
    let dockerfile = kiln_buildpacks::dockerfile(&plan, &RenderOptions::default()).unwrap();
    assert!(
        dockerfile.contains("'jupyterlab>=4; echo hi'"),
        "{dockerfile}"
    );
}

#[test]
fn symlinks_out_of_the_repository_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), &[("secret.txt", "six\n")]);
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        dir.path().join("requirements.txt"),
    )
    .unwrap();
    let err = kiln_buildpacks::plan(dir.path(), &PlanOptions::default()).unwrap_err();
    assert!(matches!(err, PlanError::SymlinkOutside { .. }), "{err}");
    // A binder folder that links outside is refused too, not followed.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("binder")).unwrap();
    let err = kiln_buildpacks::plan(dir.path(), &PlanOptions::default()).unwrap_err();
    assert!(matches!(err, PlanError::SymlinkOutside { .. }), "{err}");
    // A link inside the repository is fine.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("env/requirements.txt", "six\n")]);
    std::os::unix::fs::symlink("env/requirements.txt", dir.path().join("requirements.txt"))
        .unwrap();
    let plan = kiln_buildpacks::plan(dir.path(), &PlanOptions::default()).unwrap();
    assert_eq!(plan.primary(), Buildpack::Python);
}

#[test]
fn unreadable_and_odd_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("requirements.txt")).unwrap();
    let err = kiln_buildpacks::plan(dir.path(), &PlanOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("requirements.txt: is not a regular file"),
        "{err}"
    );

    let err = plan_of(&[("environment.yml", "dependencies:\n  - numpy\n  - [\n")]).unwrap_err();
    let PlanError::Syntax { line, column, .. } = err else {
        panic!("{err}")
    };
    assert!(line >= 3 && column >= 1);

    let file = tempfile::NamedTempFile::new().unwrap();
    let err = kiln_buildpacks::plan(file.path(), &PlanOptions::default()).unwrap_err();
    assert!(matches!(err, PlanError::NotADirectory { .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("requirements.txt"),
        vec![b'a'; 5 * 1024 * 1024],
    )
    .unwrap();
    let err = kiln_buildpacks::plan(dir.path(), &PlanOptions::default()).unwrap_err();
    assert!(matches!(err, PlanError::TooLarge { .. }), "{err}");
}

#[test]
fn a_repository_of_100_000_files_plans_like_a_small_one() {
    // Memory-backed when the machine has it: creating 100,000 files on disk is slow, planning is not.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    for d in 0..100 {
        let sub = dir.path().join(format!("data/{d:03}"));
        fs::create_dir_all(&sub).unwrap();
        for f in 0..1000 {
            fs::write(sub.join(format!("{f:04}.txt")), b"x").unwrap();
        }
    }
    write(dir.path(), &[("requirements.txt", "six\n")]);
    let big = kiln_buildpacks::plan(dir.path(), &PlanOptions::default()).unwrap();
    let small = plan_of(&[("requirements.txt", "six\n")]).unwrap();
    assert_eq!(big.environment_key, small.environment_key);
}

#[test]
fn requires_python_picks_the_version() {
    let version = |spec: &str| {
        let plan = plan_of(&[(
            "pyproject.toml",
            &format!(
                "[project]\nname='x'\nversion='0'\nrequires-python='{spec}'\ndependencies=['six']\n"
            ),
        )])
        .unwrap();
        plan.decisions
            .iter()
            .find(|d| d.topic == "python")
            .unwrap()
            .value
            .clone()
    };
    assert_eq!(
        version(">=3.9"),
        "3.11",
        "the base image's Python when admitted"
    );
    assert_eq!(version(">=3.12"), "3.14");
    assert_eq!(version(">=3.11,<3.11.99"), "3.11");
    assert_eq!(version("<3.11"), "3.10");
    let err = plan_of(&[(
        "pyproject.toml",
        "[project]\nname='x'\nrequires-python='>=4'\n",
    )])
    .unwrap_err();
    assert!(err.to_string().contains("admits none"), "{err}");
}

#[test]
fn a_target_repo_dir_moves_the_repository_and_the_working_folder_not_the_home() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[("requirements.txt", "six\n"), ("postBuild", "#!/bin/sh\n")],
    );
    let opts = PlanOptions {
        repo_dir: Some("/srv/repo".into()),
        ..PlanOptions::default()
    };
    let plan = kiln_buildpacks::plan(dir.path(), &opts).unwrap();
    let layers = plan.layers().unwrap();
    assert_eq!(layers.repository.dest, "/srv/repo");
    assert_eq!(layers.runtime.workdir, "/srv/repo");
    assert_eq!(layers.environment.env["REPO_DIR"], "/srv/repo");
    assert_eq!(layers.environment.env["HOME"], "/home/jovyan");
    let dockerfile = kiln_buildpacks::dockerfile(&plan, &RenderOptions::default()).unwrap();
    assert!(dockerfile.contains("mkdir -p /srv/repo"), "{dockerfile}");
    assert!(
        dockerfile.contains("COPY --chown=1000:1000 src/ /srv/repo/"),
        "{dockerfile}"
    );
    assert!(
        dockerfile.contains("/srv/repo/requirements.txt"),
        "{dockerfile}"
    );
    // The default keeps the home, and the environment key of the default.
    let default = kiln_buildpacks::plan(dir.path(), &PlanOptions::default()).unwrap();
    assert_ne!(default.environment_key, plan.environment_key);
    assert_eq!(default.layers().unwrap().repository.dest, "/home/jovyan");
    for bad in [
        "relative",
        "/",
        "/etc/kiln",
        "/srv/../etc",
        "/srv/a b",
        "/usr",
    ] {
        let opts = PlanOptions {
            repo_dir: Some(bad.into()),
            ..PlanOptions::default()
        };
        assert!(kiln_buildpacks::plan(dir.path(), &opts).is_err(), "{bad}");
    }
}

#[test]
fn an_appendix_goes_verbatim_at_the_very_end() {
    let dir = tempfile::tempdir().unwrap();
    let plan = kiln_buildpacks::plan(dir.path(), &PlanOptions::default()).unwrap();
    let options = RenderOptions {
        appendix: Some("RUN echo appended\n".into()),
        ..RenderOptions::default()
    };
    let dockerfile = kiln_buildpacks::dockerfile(&plan, &options).unwrap();
    assert!(
        dockerfile
            .trim_end()
            .ends_with("# --appendix:\nRUN echo appended"),
        "{dockerfile}"
    );
}
