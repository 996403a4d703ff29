//! Sources against git servers on loopback: ref resolution without cloning, shallow fetch of exactly
//! one commit, submodules, and a private repository with credentials that never show up in errors.

use crate::support::git_http::GitHttpServer;
use crate::support::*;
use kiln_builder::git::{FetchSettings, GitBackend, LibGit};
use kiln_builder::source::{GitSource, Source};

fn source(url: &str) -> GitSource {
    match Source::parse(url).unwrap() {
        Source::Git(git) => git,
        other => panic!("{url} is a git source, not {other:?}"),
    }
}

#[test]
fn resolves_branches_tags_and_shas_without_cloning() {
    let server = GitServer::start();
    let first = server.commit("refs", &[("a.txt", "1")], "first");
    let dir = server.repo_dir("refs");
    git(&dir, &["tag", "-a", "v1", "-m", "release 1"]);
    git(&dir, &["tag", "light"]);
    git(&dir, &["checkout", "--quiet", "-b", "dev"]);
    let dev = server.commit("refs", &[("b.txt", "2")], "on dev");
    git(&dir, &["checkout", "--quiet", "main"]);
    let main = server.commit("refs", &[("c.txt", "3")], "on main");
    let src = source(&server.url("refs"));
    let resolve = |r: Option<&str>| {
        LibGit
            .resolve(&src, r, &FetchSettings::default())
            .unwrap()
            .commit
    };
    assert_eq!(resolve(None), main, "HEAD");
    assert_eq!(resolve(Some("main")), main);
    assert_eq!(resolve(Some("dev")), dev);
    assert_eq!(
        resolve(Some("v1")),
        first,
        "an annotated tag resolves to its commit"
    );
    assert_eq!(resolve(Some("light")), first);
    assert_eq!(resolve(Some(&dev[..8])), dev, "a short SHA at a branch tip");
    assert_eq!(resolve(Some(&first)), first, "a full SHA");
    let err = LibGit
        .resolve(&src, Some("nope"), &FetchSettings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("it has: dev, light, main, v1"), "{err}");
}

#[test]
fn fetches_exactly_one_commit_shallowly_with_submodules() {
    let server = GitServer::start();
    server.commit("library", &[("lib.txt", "library v1")], "library");
    server.commit("project", &[("one.txt", "1")], "one");
    let two = server.commit("project", &[("two.txt", "2")], "two");
    let project = server.repo_dir("project");
    git(
        &project,
        &[
            "submodule",
            "add",
            "--quiet",
            &server.url("library"),
            "vendor/library",
        ],
    );
    let three = server.commit("project", &[("three.txt", "3")], "three, with a submodule");

    let src = source(&server.url("project"));
    let dest = tempfile::tempdir().unwrap();
    let resolved = LibGit
        .resolve(&src, None, &FetchSettings::default())
        .unwrap();
    assert_eq!(resolved.commit, three);
    let time = LibGit
        .fetch(
            &src,
            &resolved,
            &dest.path().join("repo"),
            &FetchSettings::default(),
        )
        .unwrap();
    assert_eq!(time, 1_767_323_045, "the commit time");
    let repo = dest.path().join("repo");
    for file in ["one.txt", "two.txt", "three.txt", "vendor/library/lib.txt"] {
        assert!(repo.join(file).exists(), "{file} is checked out");
    }
    assert!(repo.join(".git/shallow").exists(), "the fetch is shallow");
    let commits = git(&repo, &["rev-list", "--count", "HEAD"]);
    assert_eq!(commits, "1", "exactly one commit was fetched");

    // An older commit, by its full SHA (not the tip of any ref).
    let dest = tempfile::tempdir().unwrap();
    let resolved = LibGit
        .resolve(&src, Some(&two), &FetchSettings::default())
        .unwrap();
    LibGit
        .fetch(
            &src,
            &resolved,
            &dest.path().join("repo"),
            &FetchSettings::default(),
        )
        .unwrap();
    assert!(dest.path().join("repo/two.txt").exists());
    assert!(!dest.path().join("repo/three.txt").exists());
}

#[test]
fn file_urls_are_fetched_too() {
    let server = GitServer::start();
    let commit = server.commit("local", &[("a.txt", "1")], "first");
    let url = format!("file://{}", server.repo_dir("local").display());
    let src = source(&url);
    let resolved = LibGit
        .resolve(&src, Some("main"), &FetchSettings::default())
        .unwrap();
    assert_eq!(resolved.commit, commit);
    let dest = tempfile::tempdir().unwrap();
    LibGit
        .fetch(
            &src,
            &resolved,
            &dest.path().join("repo"),
            &FetchSettings::default(),
        )
        .unwrap();
    assert!(dest.path().join("repo/a.txt").exists());
}

#[test]
fn private_repository_needs_credentials_and_never_shows_them() {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("private");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet"]);
    std::fs::write(repo.join("requirements.txt"), "six\n").unwrap();
    git(&repo, &["add", "--all"]);
    git(&repo, &["commit", "--quiet", "-m", "private"]);
    let commit = git(&repo, &["rev-parse", "HEAD"]);
    let server = GitHttpServer::start(root.path(), "alice", "s3cret-token");
    let url = format!("{}/private", server.url());

    // Without credentials: a clear authentication error.
    let err = LibGit
        .resolve(&source(&url), None, &FetchSettings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("authentication to"), "{err}");
    assert!(server.unauthorized_count() > 0);

    // With credentials in the URL: they are used, and never printed.
    let with_secret = url.replace("http://", "http://alice:s3cret-token@");
    let src = source(&with_secret);
    assert_eq!(src.url, url, "the URL kept for display has no credentials");
    assert!(!format!("{src:?}").contains("s3cret"));
    assert_eq!(
        LibGit
            .resolve(&src, None, &FetchSettings::default())
            .unwrap()
            .commit,
        commit
    );
    let dest = tempfile::tempdir().unwrap();
    let resolved = LibGit
        .resolve(&src, None, &FetchSettings::default())
        .unwrap();
    LibGit
        .fetch(
            &src,
            &resolved,
            &dest.path().join("repo"),
            &FetchSettings::default(),
        )
        .unwrap();
    assert!(dest.path().join("repo/requirements.txt").exists());

    // A wrong password fails without echoing it, through the CLI too.
    let wrong = url.replace("http://", "http://alice:wrong-secret@");
    let out = kiln()
        .args(["build", "--json-logs", &wrong])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("authentication to"), "{text}");
    assert!(!text.contains("wrong-secret"), "the secret leaked: {text}");

    // Credentials from the environment, through the CLI: the private repository builds.
    require_engine();
    let image = format!("kiln-test/{}:1", unique("private"));
    let out = kiln()
        .env("KILN_GIT_USERNAME", "alice")
        .env("KILN_GIT_PASSWORD", "s3cret-token")
        .args(["build", "--json-logs", "--image-name", &image, &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("s3cret"), "the secret leaked: {text}");
    assert_eq!(last_event(&out.stdout)["imageName"], image.as_str());
    remove_image(&image);
}
