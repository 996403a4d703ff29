//! Reaching loopback and private networks: other spellings of loopback, redirects, submodules,
//! conda channels; and a conda package whose files land outside its environment.

use std::path::Path;
use std::process::Command;

use super::{build_events, failure};
use crate::support::conda::ChannelServer;
use crate::support::git_http::GitHttpServer;
use crate::support::redirector::Redirector;
use crate::support::service::Service;
use crate::support::*;

#[test]
fn encoded_ipv6_and_special_purpose_hosts_are_refused() {
    let state = tempfile::tempdir().unwrap();
    // Nothing is allowed: every spelling of loopback and every special range is refused.
    let service = Service::start_with(
        &state.path().join("state.db"),
        &[("KILN_ALLOWED_HOSTS", "")],
    );
    let port = free_port();
    for url in [
        format!("http://[::ffff:127.0.0.1]:{port}/repo"),
        format!("http://[::ffff:7f00:1]:{port}/repo"),
        format!("http://2130706433:{port}/repo"),
        format!("http://0x7f.1:{port}/repo"),
        format!("git://0.0.0.0:{port}/repo"),
        format!("https://localhost:{port}/repo"),
        "http://100.64.0.1/repo".to_string(),
        "http://198.18.0.1/repo".to_string(),
        "http://169.254.169.254/latest/meta-data".to_string(),
        "git://[fe80::1]/repo".to_string(),
        "http://[64:ff9b::a00:1]/repo".to_string(),
    ] {
        let message = failure(&build_events(&service, &url, ""));
        assert!(message.contains("does not fetch"), "{url}: {message}");
    }
    assert_eq!(service.builds_started(), 0, "nothing was built");
}

#[test]
fn a_redirect_to_another_loopback_port_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let target = GitHttpServer::start(root.path(), "alice", "s3cret");
    let redirector = Redirector::start(&target.url());
    let state = tempfile::tempdir().unwrap();
    // Only the redirector's port is open; the server it points at is not.
    let allowed = format!("127.0.0.1:{}", redirector.port);
    let service = Service::start_with(
        &state.path().join("state.db"),
        &[("KILN_ALLOWED_HOSTS", &allowed)],
    );
    let message = failure(&build_events(
        &service,
        &format!("{}/repo", redirector.url()),
        "",
    ));
    assert!(
        message.contains("redirect") || message.contains("does not fetch"),
        "{message}"
    );
    assert!(redirector.hits.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert_eq!(
        target.unauthorized_count(),
        0,
        "the redirect was not followed"
    );
    assert!(target.credentials_seen().is_empty());
}

/// A repository whose `.gitmodules` names `url` for a submodule at `vendor/sub`.
fn with_submodule(server: &GitServer, name: &str, url: &str) -> String {
    let dir = server.init(name);
    std::fs::write(dir.join("README.md"), "a repository with a submodule\n").unwrap();
    std::fs::write(
        dir.join(".gitmodules"),
        format!("[submodule \"sub\"]\n\tpath = vendor/sub\n\turl = {url}\n"),
    )
    .unwrap();
    git(&dir, &["add", "README.md", ".gitmodules"]);
    git(
        &dir,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{},vendor/sub", "1".repeat(40)),
        ],
    );
    git(&dir, &["commit", "--quiet", "-m", "with a submodule"]);
    server.url(name)
}

#[test]
fn gitmodules_with_file_urls_absolute_paths_and_private_hosts_are_refused() {
    let server = GitServer::start();
    // A repository on the local disk that a submodule must never read.
    let local = tempfile::tempdir().unwrap();
    git(local.path(), &["init", "--quiet"]);
    std::fs::write(local.path().join("secret.txt"), "local secret\n").unwrap();
    git(local.path(), &["add", "secret.txt"]);
    git(local.path(), &["commit", "--quiet", "-m", "local"]);
    let local_path = local.path().display().to_string();
    let state = tempfile::tempdir().unwrap();
    let allowed = format!("127.0.0.1:{}", server.port);
    let service = Service::start_with(
        &state.path().join("state.db"),
        &[("KILN_ALLOWED_HOSTS", &allowed)],
    );
    for (name, url, expected) in [
        ("sub-file", format!("file://{local_path}"), "file://"),
        ("sub-absolute", local_path.clone(), "local paths"),
        (
            "sub-private",
            "http://10.0.0.5/team/lib.git".to_string(),
            "private",
        ),
        ("sub-ssh", "git@127.0.0.1:team/lib.git".to_string(), "ssh"),
        (
            "sub-other-port",
            format!("git://127.0.0.1:{}/lib", free_port()),
            "does not fetch",
        ),
    ] {
        let repo = with_submodule(&server, name, &url);
        let message = failure(&build_events(&service, &repo, "?build_only=true"));
        assert!(message.contains(expected), "{name}: {message}");
        assert!(message.contains("submodule"), "{name}: {message}");
    }
    // A relative URL climbs the parent's URL, never the local folder: it names a repository on the
    // same server (missing there), not the folder kiln fetched into.
    let repo = with_submodule(
        &server,
        "sub-relative",
        "../../../../../../../../tmp/kiln-nothing",
    );
    let message = failure(&build_events(&service, &repo, "?build_only=true"));
    assert!(
        message.contains(&format!("127.0.0.1:{}", server.port)),
        "{message}"
    );
    assert!(!message.contains("local secret"), "{message}");
}

#[test]
fn a_conda_channel_on_loopback_named_by_a_repository_is_refused() {
    let server = GitServer::start();
    let channel = ChannelServer::start();
    let repo = server.commit(
        "conda-loopback",
        &[(
            "environment.yml",
            &format!(
                "channels:\n  - {}\ndependencies:\n  - kiln-hello\n",
                channel.url()
            ),
        )],
        "a channel on loopback",
    );
    assert!(!repo.is_empty());
    let state = tempfile::tempdir().unwrap();
    // The git server is allowed; the channel's port is not (and it is no mirror).
    let allowed = format!("127.0.0.1:{}", server.port);
    let service = Service::start_with(
        &state.path().join("state.db"),
        &[("KILN_ALLOWED_HOSTS", &allowed)],
    );
    let message = failure(&build_events(&service, &server.url("conda-loopback"), ""));
    assert!(message.contains("does not fetch"), "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{}", channel.port)),
        "{message}"
    );
}

/// A repository ships a lock naming a package whose paths.json climbs out of the environment (or
/// names an absolute path): kiln refuses it before installing anything on the host.
#[test]
fn a_conda_package_that_writes_outside_its_environment_is_refused() {
    let channel_dir = tempfile::tempdir().unwrap();
    let escape = format!("/tmp/kiln-escape-{}", unique("pkg"));
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conda/hostile-package.sh"))
        .arg(channel_dir.path())
        .arg("evil")
        .arg(format!("../../../../../../../..{escape}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (file, sha256) = text.trim().split_once(' ').unwrap();
    let channel = ChannelServer::serve(channel_dir.path());
    let server = GitServer::start();
    server.commit(
        "conda-evil",
        &[
            ("environment.yml", "channels:\n  - conda-forge\ndependencies:\n  - evil\n"),
            (
                "conda-linux-64.lock",
                &format!(
                    "@EXPLICIT\nhttps://conda.anaconda.org/conda-forge/linux-64/{file}#sha256:{sha256}\n"
                ),
            ),
        ],
        "a hostile package",
    );
    let state = tempfile::tempdir().unwrap();
    let mirrors = format!("conda-forge={}", channel.url());
    let service = Service::start_with(
        &state.path().join("state.db"),
        &[
            ("KILN_CONDA_MIRRORS", &mirrors),
            (
                "KILN_CONDA_CACHE",
                &channel.cache_dir().display().to_string(),
            ),
        ],
    );
    let message = failure(&build_events(&service, &server.url("conda-evil"), ""));
    assert!(
        message.contains("would write outside its environment"),
        "{message}"
    );
    assert!(
        !Path::new(&escape).exists(),
        "the package wrote onto the host"
    );
}
