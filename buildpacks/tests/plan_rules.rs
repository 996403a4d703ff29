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

/// `PlanOptions::refresh` (a catalogue entry's `rebuild.lock_change` for pip): the steps that
/// download the repository's dependencies get it, so they run again and the key moves; the runtime
/// and Jupyter steps, shared by every repository on that Python, do not.
#[test]
fn refresh_reruns_the_repositorys_download_steps_and_moves_the_key() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("requirements.txt", "six\n")]);
    let plan = |refresh: Option<&str>| {
        kiln_buildpacks::plan(
            dir.path(),
            &PlanOptions {
                refresh: refresh.map(str::to_string),
                ..PlanOptions::default()
            },
        )
        .unwrap()
    };
    let (plain, refreshed, again) = (plan(None), plan(Some("1")), plan(Some("2")));
    assert_ne!(plain.environment_key, refreshed.environment_key);
    assert_ne!(refreshed.environment_key, again.environment_key);
    let env = &refreshed.layers().unwrap().environment;
    let with = |steps: &[kiln_buildpacks::plan::Step]| {
        steps
            .iter()
            .filter(|s| s.env.get("KILN_REFRESH").map(String::as_str) == Some("1"))
            .count()
    };
    assert!(
        env.steps
            .iter()
            .any(|s| s.name.contains("requirements.txt") && s.env.contains_key("KILN_REFRESH")),
        "{:#?}",
        env.steps
    );
    assert_eq!(
        with(&env.base_steps),
        0,
        "the shared Jupyter layers stay shared"
    );
    let plain_env = &plain.layers().unwrap().environment;
    assert_eq!(plain_env.base_steps, env.base_steps);
    assert_eq!(with(&plain_env.steps), 0);
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

#[test]
fn package_mirrors_go_to_the_steps_that_download_not_into_the_image() {
    use kiln_buildpacks::options::PackageMirrors;
    let files = [("requirements.txt", "six\n"), ("apt.txt", "less\n")];
    let plan = plan_with(&files, &PlanOptions::default()).unwrap();
    let (pypi, npm, julia) = (
        "http://127.0.0.1:3141/simple/",
        "http://127.0.0.1:4873/",
        "http://127.0.0.1:8000/",
    );
    let plain = kiln_buildpacks::dockerfile(&plan, &RenderOptions::default()).unwrap();
    let with = kiln_buildpacks::dockerfile(
        &plan,
        &RenderOptions {
            mirrors: PackageMirrors::new(Some(pypi), Some(npm), Some(julia)).unwrap(),
            ..RenderOptions::default()
        },
    )
    .unwrap();
    for (var, url) in [
        ("PIP_INDEX_URL", pypi),
        ("UV_DEFAULT_INDEX", pypi),
        ("PIPENV_PYPI_MIRROR", pypi),
        ("NPM_CONFIG_REGISTRY", npm),
        ("JULIA_PKG_SERVER", julia),
    ] {
        assert!(!plain.contains(var), "{plain}");
        let exported = format!("{var}={url}");
        assert!(
            with.split("\nRUN ").any(|run| run.contains(&exported)),
            "{var} is not exported:\n{with}"
        );
    }
    // Not the image's environment: sessions keep the public servers.
    assert!(
        !with
            .lines()
            .any(|l| l.starts_with("ENV") && (l.contains(pypi) || l.contains(npm))),
        "{with}"
    );
}

#[test]
fn package_mirrors_with_credentials_or_other_schemes_are_refused() {
    use kiln_buildpacks::options::PackageMirrors;
    let given = PackageMirrors::new(Some(" https://mirror.example/pypi/simple/ "), None, None);
    assert_eq!(
        given.unwrap().pypi.as_deref(),
        Some("https://mirror.example/pypi/simple/")
    );
    let err =
        PackageMirrors::new(None, Some("https://user:s3cret@npm.example/"), None).unwrap_err();
    assert!(
        err.contains("KILN_NPM_REGISTRY") && err.contains("credentials") && !err.contains("s3cret"),
        "{err}"
    );
    for bad in [
        "ftp://mirror.example/simple",
        "mirror.example/simple",
        "https://m.example/simple?x=1",
    ] {
        assert!(PackageMirrors::new(None, None, Some(bad)).is_err(), "{bad}");
    }
}

#[test]
fn ubuntu_package_names_are_refused_with_debians_only_on_kilns_debian_base() {
    let files = [("apt.txt", "curl\nfirefox\npython-dev=2.7.18\n")];
    let err = plan_with(&files, &PlanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("apt.txt:2:")
            && err.contains("use firefox-esr")
            && err.contains("line 3: \"python-dev\", use python3-dev"),
        "{err}"
    );
    // An operator's Ubuntu base has these names: nothing is refused.
    let ubuntu = PlanOptions {
        base_image: "ubuntu:24.04".into(),
        ..PlanOptions::default()
    };
    assert!(plan_with(&files, &ubuntu).is_ok());
    // Debian's own names plan on the default base.
    let debian = [("apt.txt", "firefox-esr\npython3-dev\n")];
    assert!(plan_with(&debian, &PlanOptions::default()).is_ok());
}

fn plan_with(
    files: &[(&str, &str)],
    options: &PlanOptions,
) -> Result<kiln_buildpacks::BuildPlan, PlanError> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), files);
    kiln_buildpacks::plan(dir.path(), options)
}

fn locked() -> PlanOptions {
    PlanOptions {
        locked: Some(kiln_buildpacks::options::Locked {
            from: "registry.example/analysis:abc".into(),
            python: Some("numpy==1.26.4 \\\n    --hash=sha256:aaaa\nsix==1.16.0 \\\n    --hash=sha256:bbbb\n".into()),
            deb: [("graphviz".to_string(), "2.42.2-7+b3".to_string())].into(),
            r_snapshot: Some("2024-06-01".into()),
        }),
        ..PlanOptions::default()
    }
}

#[test]
fn a_python_environment_records_its_lock_after_every_environment_step() {
    let plan = plan_of(&[
        (
            "requirements.txt",
            "--extra-index-url http://127.0.0.1:9/simple/\nsix\n",
        ),
        (
            "pyproject.toml",
            "[project]\nname = \"x\"\ndependencies = [\"numpy\"]\n",
        ),
    ])
    .unwrap();
    let Build::Layers(layers) = &plan.build else {
        panic!()
    };
    let last = layers.environment.steps.last().unwrap();
    assert!(last.name.contains("Python lock"), "{:?}", last.name);
    assert!(last.network, "it asks the index for the hashes");
    // It reads the requirements file for its index options.
    assert!(
        last.commands[0]
            .iter()
            .any(|a| a.ends_with("/requirements.txt")),
        "{:?}",
        last.commands
    );
    assert!(
        layers
            .environment
            .files
            .iter()
            .any(|f| f.dest.ends_with("/lock-python"))
    );
}

#[test]
fn locked_python_installs_the_earlier_image_in_place_of_the_requirements() {
    let a = plan_with(&[("requirements.txt", "numpy\nsix\n")], &locked()).unwrap();
    let Build::Layers(layers) = &a.build else {
        panic!()
    };
    let steps = &layers.environment.steps;
    assert!(
        !steps
            .iter()
            .any(|s| s.inputs.iter().any(|i| i == "requirements.txt")),
        "requirements.txt is no longer resolved: {steps:#?}"
    );
    let install = steps.iter().find(|s| s.name.contains("--locked")).unwrap();
    let command = &install.commands[0];
    assert!(
        command.iter().any(|a| a == "--require-hashes"),
        "{command:?}"
    );
    assert!(command.iter().any(|a| a == "--no-deps"), "{command:?}");
    let lock = layers
        .environment
        .files
        .iter()
        .find(|f| f.dest.ends_with("/python-locked.txt"))
        .unwrap();
    assert!(lock.content.contains("numpy==1.26.4"));
    assert!(
        a.decisions
            .iter()
            .any(|d| d.topic == "requirements.txt" && d.value == "replaced by the lock")
    );

    // The key covers the lock, not the files: another repository locked to the same image shares it.
    let b = plan_with(
        &[("requirements.txt", "numpy>=1\nsix  # other words\n")],
        &locked(),
    )
    .unwrap();
    assert_eq!(a.environment_key, b.environment_key);
    let unlocked = plan_of(&[("requirements.txt", "numpy\nsix\n")]).unwrap();
    assert_ne!(a.environment_key, unlocked.environment_key);
}

#[test]
fn locked_apt_packages_get_the_versions_of_the_earlier_image() {
    let plan = plan_with(
        &[
            ("apt.txt", "graphviz\nnot-in-the-image\n"),
            ("requirements.txt", "six\n"),
        ],
        &locked(),
    )
    .unwrap();
    let Build::Layers(layers) = &plan.build else {
        panic!()
    };
    assert_eq!(
        layers.environment.system_packages,
        ["graphviz=2.42.2-7+b3", "not-in-the-image"]
    );
    let decision = plan
        .decisions
        .iter()
        .find(|d| d.topic == "apt.txt")
        .unwrap();
    assert!(
        decision.reason.contains("not pinned: not-in-the-image"),
        "{decision:?}"
    );
}

#[test]
fn conda_environment_key_waits_for_the_lock_not_the_file() {
    // Different files, before the lock: the key does not tell them apart, so that what they
    // resolve to decides (the builder completes the key with the lock).
    let a = plan_of(&[("environment.yml", "dependencies:\n  - numpy\n")]).unwrap();
    let b = plan_of(&[(
        "environment.yml",
        "# the same, said otherwise\ndependencies: [numpy]\n",
    )])
    .unwrap();
    let (ka, kb) = (a.environment_key.unwrap(), b.environment_key.unwrap());
    assert_eq!(ka, kb);
    let lock = "@EXPLICIT\nhttps://c.example/linux-64/numpy-2.0-0.conda#sha256:00\n";
    let other = "@EXPLICIT\nhttps://c.example/linux-64/numpy-2.1-0.conda#sha256:01\n";
    use kiln_buildpacks::key::with_conda_lock;
    assert_eq!(with_conda_lock(&ka, lock), with_conda_lock(&kb, lock));
    assert_ne!(with_conda_lock(&ka, lock), with_conda_lock(&ka, other));
}

#[test]
fn locked_r_installs_from_the_snapshot_of_the_earlier_image() {
    let plan = plan_with(
        &[
            ("runtime.txt", "r-4.2-2023-01-15\n"),
            ("install.R", "install.packages('x')\n"),
        ],
        &locked(),
    )
    .unwrap();
    let decision = plan
        .decisions
        .iter()
        .find(|d| d.topic == "CRAN snapshot")
        .unwrap();
    assert!(decision.value.ends_with("/2024-06-01"), "{decision:?}");
    assert!(decision.reason.contains("--locked"), "{decision:?}");
}

/// install.R and a DESCRIPTION run the repository's own code with the R package cache mounted:
/// it is mounted only under the repository's scope (with BuildKit), and not at all without one.
#[test]
fn the_r_package_cache_is_mounted_only_under_a_repositorys_scope() {
    let files = [
        ("install.R", "install.packages('tinypkg')\n"),
        (
            "DESCRIPTION",
            "Package: a\nVersion: 0.1\nImports: tinypkg\n",
        ),
    ];
    let plan = plan_with(&files, &PlanOptions::default()).unwrap();
    let render = |scope: Option<&str>, buildkit: bool| {
        kiln_buildpacks::dockerfile(
            &plan,
            &RenderOptions {
                buildkit,
                cache_salt: Some("salt".into()),
                cache_scope: scope.map(String::from),
                ..RenderOptions::default()
            },
        )
        .unwrap()
    };
    let scoped = render(Some("0123abcd"), true);
    let r_steps: Vec<&str> = scoped
        .split("\nRUN ")
        .filter(|run| run.contains("Rscript /usr/local/lib/kiln/install-r-packages.R"))
        .collect();
    assert_eq!(r_steps.len(), 2, "{scoped}");
    for run in r_steps {
        assert!(
            run.contains(
                "--mount=type=cache,id=kiln-r-0123abcd-salt-1000,target=/var/cache/kiln/r"
            ),
            "{run}"
        );
        assert!(run.contains("KILN_R_CACHE=/var/cache/kiln/r"), "{run}");
    }
    for unscoped in [render(None, true), render(Some("0123abcd"), false)] {
        assert!(!unscoped.contains("KILN_R_CACHE"), "{unscoped}");
        assert!(!unscoped.contains("kiln-r-"), "{unscoped}");
    }
}
