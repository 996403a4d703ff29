//! Package index mirrors (`KILN_PYPI_MIRROR`), against a mirror on loopback: a PEP 503 index that
//! holds a package of its own and passes every other project through to PyPI's pages (standing in
//! for an institution's mirror; PyPI's file host serves the files). pip, uv and pipenv all go
//! through it, including a Pipfile that names PyPI by its legacy host.

use crate::support::package_index::PackageIndex;
use crate::support::service::{Service, escaped};
use crate::support::*;

/// Only the mirror has it (it is not on PyPI): a build that installs it used the mirror.
const MIRROR_ONLY: &str = "kiln-test-mirror-only";

fn build(args: &[&str], mirror: Option<&str>) -> (bool, String) {
    let mut command = kiln();
    command.args(["build", "--json-logs"]).args(args);
    match mirror {
        Some(url) => command.env("KILN_PYPI_MIRROR", url),
        None => command.env_remove("KILN_PYPI_MIRROR"),
    };
    let out = command.output().unwrap();
    let log = messages(&events(&out.stdout));
    (
        out.status.success(),
        format!("{log}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

/// What `python -c CODE` prints in `image`, without a network.
fn python(image: &str, code: &str) -> String {
    in_image(image, &["python", "-c", code]).trim().to_string()
}

#[test]
fn a_pypi_mirror_serves_pip_uv_and_a_pipfile_that_names_pypi_by_its_legacy_host() {
    require_engine();
    let mirror = PackageIndex::mirror_of_pypi();
    mirror.publish(MIRROR_ONLY, "1.0");
    let server = GitServer::start();
    server.commit(
        "mirrored",
        &[("requirements.txt", &format!("{MIRROR_ONLY}==1.0\n"))],
        "a package only the mirror has",
    );
    let pipfile = format!(
        "[[source]]\nurl = \"https://pypi.python.org/simple\"\nverify_ssl = true\nname = \"pypi\"\n\n[packages]\n{MIRROR_ONLY} = \"==1.0\"\n"
    );
    server.commit(
        "legacy-pipfile",
        &[("Pipfile", &pipfile)],
        "a Pipfile of 2018",
    );
    let (requirements, pipenv) = (
        format!("kiln-test/{}:1", unique("mirror-requirements")),
        format!("kiln-test/{}:1", unique("mirror-pipfile")),
    );

    // requirements.txt: uv installs Jupyter and the repository's packages through the mirror, pip
    // installs uv itself through it.
    let (ok, log) = build(
        &["--image-name", &requirements, &server.url("mirrored")],
        Some(&mirror.url()),
    );
    assert!(ok, "{log}");
    let asked = mirror.requested();
    for project in [MIRROR_ONLY, "jupyterlab", "uv"] {
        assert!(
            asked.iter().any(|p| p == project),
            "{project} not asked of the mirror: {asked:?}"
        );
    }
    assert_eq!(
        python(
            &requirements,
            "import kiln_test_mirror_only as m; print(m.__version__)"
        ),
        "1.0"
    );
    // The mirror is the build's, not the image's: sessions keep PyPI.
    assert_eq!(
        python(
            &requirements,
            "import os; print([k for k in os.environ if 'INDEX' in k or 'MIRROR' in k])"
        ),
        "[]"
    );

    // A Pipfile whose source is PyPI's legacy host (which does not resolve here): pipenv is sent
    // to the mirror instead.
    let before = mirror.requested().len();
    let (ok, log) = build(
        &["--image-name", &pipenv, &server.url("legacy-pipfile")],
        Some(&mirror.url()),
    );
    assert!(ok, "{log}");
    assert!(
        mirror.requested()[before..]
            .iter()
            .any(|p| p == MIRROR_ONLY),
        "pipenv did not ask the mirror: {:?}",
        mirror.requested()
    );
    assert_eq!(
        python(
            &pipenv,
            "import kiln_test_mirror_only as m; print(m.__version__)"
        ),
        "1.0"
    );

    // The service passes its KILN_PYPI_MIRROR to its builds as well.
    let state = tempfile::tempdir().unwrap();
    let mirror_url = mirror.url();
    let service = Service::start_with(
        &state.path().join("state.db"),
        &[("KILN_PYPI_MIRROR", mirror_url.as_str())],
    );
    let before = mirror.requested().len();
    // A new environment (the old one would be reused, asking nothing of any index), with another
    // package only the mirror has (a new version of the first could come from uv's cache of its
    // index page).
    let service_only = "kiln-test-mirror-service";
    mirror.publish(service_only, "1.0");
    server.commit(
        "mirrored",
        &[("requirements.txt", &format!("{service_only}==1.0\n"))],
        "through the service",
    );
    let (events, raw) = service.events(&format!(
        "/build/git/{}/HEAD?build_only=true",
        escaped(&server.url("mirrored"))
    ));
    assert_eq!(
        events.last().map(|e| &e["phase"]),
        Some(&"ready".into()),
        "{raw}"
    );
    assert!(
        mirror.requested()[before..]
            .iter()
            .any(|p| p == service_only),
        "the service's build did not ask the mirror: {:?}",
        mirror.requested()
    );
    let served = events.last().unwrap()["imageName"]
        .as_str()
        .unwrap()
        .to_string();
    drop(service);
    remove_image(&served);

    // The control: without the mirror the same repository does not build.
    let (ok, log) = build(
        &[
            "--image-name",
            &unique("mirror-none"),
            &server.url("mirrored"),
        ],
        None,
    );
    assert!(!ok, "built without the mirror: {log}");
    remove_image(&requirements);
    remove_image(&pipenv);
}

#[test]
fn a_pypi_mirror_url_with_credentials_is_refused_before_any_work() {
    let out = kiln()
        .args([
            "build",
            "--pypi-mirror",
            "https://alice:s3cret@mirror.example/simple/",
            ".",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("credentials") && !text.contains("s3cret"),
        "{text}"
    );
}

/// `KILN_NPM_REGISTRY`: a postBuild's `npm install` goes to the registry kiln is given (one on
/// loopback that holds a package the public registry lacks), for the package document and the
/// tarball alike; the session's image keeps the public registry; without the setting the same
/// repository does not build.
#[test]
fn an_npm_registry_mirror_serves_a_postbuilds_npm_install() {
    require_engine();
    let registry = crate::support::npm_registry::NpmRegistry::start();
    let package = "kiln-test-npm-only";
    registry.publish(package, "1.0.0");
    let server = GitServer::start();
    let post_build = format!(
        "#!/bin/bash\nset -euo pipefail\nnpm install --no-audit --no-fund --prefix \"$HOME/npm-test\" {package}\nnode -e 'console.log(require(process.env.HOME + \"/npm-test/node_modules/{package}\"))' > \"$HOME/npm-test.txt\"\n"
    );
    server.commit(
        "npm-mirrored",
        &[("postBuild", &post_build), ("requirements.txt", "")],
        "a postBuild that installs a package only the mirror has",
    );
    let image = format!("kiln-test/{}:1", unique("npm-mirror"));
    let out = kiln()
        .args([
            "build",
            "--json-logs",
            "--image-name",
            &image,
            &server.url("npm-mirrored"),
        ])
        .env("KILN_NPM_REGISTRY", registry.url())
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        messages(&events(&out.stdout)),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    let asked = registry.requested();
    assert!(
        asked.iter().any(|p| p == &format!("/{package}")),
        "the package document was not asked of the mirror: {asked:?}"
    );
    assert!(
        asked
            .iter()
            .any(|p| p == &format!("/-/tarballs/{package}-1.0.0.tgz")),
        "the tarball was not fetched from the mirror: {asked:?}"
    );
    assert_eq!(
        in_image(&image, &["cat", "/home/jovyan/npm-test.txt"]).trim(),
        "1.0.0"
    );
    assert_eq!(
        in_image(&image, &["sh", "-c", "echo \"[${NPM_CONFIG_REGISTRY:-}]\""]).trim(),
        "[]",
        "the mirror is the build's, not the session's"
    );
    remove_image(&image);

    // The control: without the mirror, npm asks the public registry, which has no such package.
    let out = kiln()
        .args([
            "build",
            "--image-name",
            &format!("kiln-test/{}:1", unique("npm-none")),
            &server.url("npm-mirrored"),
        ])
        .env_remove("KILN_NPM_REGISTRY")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "built without the mirror: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
