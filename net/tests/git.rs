//! kiln-net's libgit2 transports against real git servers on 127.0.0.1: `git daemon` and a smart
//! HTTP server that runs `git http-backend`. Each hostile test is named after the attack it tries
//! and counts what the target received.

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Counter, GitDaemon, HttpServer, Reply, bare_repo, bare_repo_with, basic, noise};
use kiln_net::git::{self, Credentials, Scope};
use kiln_net::{AllowList, Error, Policy};

fn policy_opening(entries: &[String]) -> Policy {
    Policy::public().with_allowed(AllowList::from_entries(entries).unwrap())
}

/// ls-remote: the advertised refs.
fn ls_remote(url: &str) -> Result<Vec<(String, String)>, git2::Error> {
    let mut remote = git2::Remote::create_detached(url)?;
    let connection = remote.connect_auth(git2::Direction::Fetch, None, None)?;
    Ok(connection
        .list()?
        .iter()
        .map(|h| (h.name().to_string(), h.oid().to_string()))
        .collect())
}

/// A depth-1 fetch of `sha` into a new repository at `dest`.
fn shallow_fetch(url: &str, sha: &str, dest: &Path) -> Result<git2::Repository, git2::Error> {
    let repo = git2::Repository::init(dest)?;
    {
        let mut remote = repo.remote_anonymous(url)?;
        let mut options = git2::FetchOptions::new();
        options.depth(1);
        options.download_tags(git2::AutotagOption::None);
        remote.fetch(&[sha], Some(&mut options), None)?;
    }
    Ok(repo)
}

fn assert_shallow_commit(repo: &git2::Repository, sha: &str, parent: &str, file: &str) {
    let commit = repo
        .find_commit(git2::Oid::from_str(sha).unwrap())
        .expect("the fetched commit is there");
    assert!(
        repo.is_shallow(),
        "a depth-1 fetch leaves a shallow repository"
    );
    assert!(
        repo.find_commit(git2::Oid::from_str(parent).unwrap())
            .is_err(),
        "the parent commit was fetched too: not shallow"
    );
    assert!(commit.tree().unwrap().get_path(Path::new(file)).is_ok());
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    shas: Vec<String>,
}

/// `public.git` with two commits (a.txt, then b.txt).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    std::fs::create_dir_all(&root).unwrap();
    let shas = bare_repo(
        &root,
        "public",
        &[&[("a.txt", b"first\n")], &[("b.txt", b"second\n")]],
    );
    Fixture {
        _dir: dir,
        root,
        shas,
    }
}

// ---- git:// ----------------------------------------------------------------------------------

#[test]
fn ls_remote_and_depth_one_fetch_over_git_daemon() {
    let f = fixture();
    let daemon = GitDaemon::start(&f.root);
    let scope = Scope::new(policy_opening(&[format!("127.0.0.1:{}", daemon.port)]));
    let url = daemon.url("public.git");
    let refs = scope.run(|| ls_remote(&url)).unwrap();
    assert!(
        refs.contains(&("refs/heads/main".to_string(), f.shas[1].clone())),
        "{refs:?}"
    );
    let dest = tempfile::tempdir().unwrap();
    let repo = scope
        .run(|| shallow_fetch(&url, &f.shas[1], dest.path()))
        .unwrap();
    assert_shallow_commit(&repo, &f.shas[1], &f.shas[0], "b.txt");
    assert!(scope.received() > 0);
    assert_eq!(
        scope.requests(),
        2,
        "one connection for ls-remote, one for the fetch"
    );
}

#[test]
fn git_daemon_on_an_unopened_port_is_refused() {
    let target = Counter::start();
    let scope = Scope::new(Policy::public());
    let err = scope
        .run(|| ls_remote(&format!("git://127.0.0.1:{}/public.git", target.port)))
        .unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    assert_eq!(target.connections(), 0);
    assert_eq!(scope.requests(), 0);
}

#[test]
fn git_url_naming_localhost_is_refused_when_only_the_ip_is_opened() {
    let target = Counter::start();
    let scope = Scope::new(policy_opening(&[format!("127.0.0.1:{}", target.port)]));
    let err = scope
        .run(|| ls_remote(&format!("git://localhost:{}/public.git", target.port)))
        .unwrap_err();
    assert!(
        matches!(err, Error::Refused { ref host, .. } if host == "localhost"),
        "{err}"
    );
    assert_eq!(target.connections(), 0);
}

#[test]
fn ipv4_mapped_ipv6_literal_is_refused_for_git() {
    let target = Counter::start();
    let scope = Scope::new(policy_opening(&[format!("127.0.0.1:{}", target.port)]));
    for url in [
        format!("git://[::ffff:127.0.0.1]:{}/public.git", target.port),
        format!("git://0x7f.1:{}/public.git", target.port + 1),
        format!("http://[::ffff:7f00:1]:{}/public.git", target.port),
    ] {
        let err = scope.run(|| ls_remote(&url)).unwrap_err();
        assert!(matches!(err, Error::Refused { .. }), "{url}: {err}");
    }
    assert_eq!(target.connections(), 0);
}

#[test]
fn libgit2_outside_a_scope_does_not_connect() {
    let target = Counter::start();
    git::register().unwrap();
    for url in [
        format!("git://127.0.0.1:{}/x.git", target.port),
        format!("http://127.0.0.1:{}/x.git", target.port),
    ] {
        let err = ls_remote(&url).unwrap_err();
        assert!(
            err.message().contains("with_scope"),
            "{url}: {}",
            err.message()
        );
    }
    // A scope on another thread is not this thread's.
    let scope = Scope::new(Policy::open());
    let url = format!("git://127.0.0.1:{}/x.git", target.port);
    git::with_scope(&scope, || {
        let other = std::thread::spawn(move || ls_remote(&url).unwrap_err().message().to_string());
        assert!(other.join().unwrap().contains("with_scope"));
    })
    .unwrap();
    assert_eq!(target.connections(), 0);
}

#[test]
fn fetch_over_the_byte_budget_stops_while_downloading_git() {
    let f = fixture();
    bare_repo(&f.root, "big", &[&[("noise.bin", &noise(4 << 20, 7))]]);
    let daemon = GitDaemon::start(&f.root);
    let limit = 256 * 1024;
    let scope = Scope::builder(policy_opening(&[format!("127.0.0.1:{}", daemon.port)]))
        .max_bytes(limit)
        .build();
    let url = daemon.url("big.git");
    let sha = scope.run(|| ls_remote(&url)).unwrap()[0].1.clone();
    let dest = tempfile::tempdir().unwrap();
    let err = scope
        .run(|| shallow_fetch(&url, &sha, dest.path()).map(|_| ()))
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit: l } if l == limit),
        "{err}"
    );
    // Stopped as the bytes arrived: far less than the 4 MiB pack was read.
    assert!(
        scope.received() < limit + 1024 * 1024,
        "{}",
        scope.received()
    );
    // The budget is spent for the rest of the scope.
    let err = scope.run(|| ls_remote(&url)).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

#[test]
fn a_git_server_that_trickles_bytes_is_stopped_by_the_deadline() {
    // A git:// server that sends a pkt-line header, then one byte every 100 ms.
    let server = Counter::serve(|mut stream| {
        std::thread::spawn(move || {
            use std::io::Write;
            let started = Instant::now();
            let mut line = b"00ff".to_vec();
            line.extend(std::iter::repeat_n(b'a', 300));
            for byte in line {
                if started.elapsed() > Duration::from_secs(30) || stream.write_all(&[byte]).is_err()
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    });
    let scope = Scope::builder(policy_opening(&[format!("127.0.0.1:{}", server.port)]))
        .timeout(Duration::from_secs(1))
        .io_timeout(Duration::from_secs(5))
        .build();
    let started = Instant::now();
    let err = scope
        .run(|| ls_remote(&format!("git://127.0.0.1:{}/slow.git", server.port)))
        .unwrap_err();
    assert!(
        matches!(err, Error::TimedOut { limit } if limit == Duration::from_secs(1)),
        "{err}"
    );
    assert!(
        scope.received() > 0,
        "the server's bytes were read as they came"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn submodules_are_fetched_in_the_scope() {
    let f = fixture();
    let daemon = GitDaemon::start(&f.root);
    let sub = bare_repo(
        &f.root,
        "sub",
        &[&[("inside.txt", b"from the submodule\n")]],
    );
    let parent = bare_repo_with(
        &f.root,
        "parent",
        &[&[("top.txt", b"top\n")]],
        &[("sub", &daemon.url("sub.git"), &sub[0])],
    );
    let policy = policy_opening(&[format!("127.0.0.1:{}", daemon.port)]);
    let scope = Scope::new(policy.clone());
    let dest = tempfile::tempdir().unwrap();
    let url = daemon.url("parent.git");
    scope
        .run(|| {
            let repo = shallow_fetch(&url, &parent[0], dest.path())?;
            repo.set_head_detached(git2::Oid::from_str(&parent[0]).unwrap())?;
            repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))?;
            for mut submodule in repo.submodules()? {
                git::check_remote(&policy, submodule.url().unwrap().unwrap()).unwrap();
                let mut fetch = git2::FetchOptions::new();
                fetch.depth(1);
                let mut options = git2::SubmoduleUpdateOptions::new();
                options.fetch(fetch);
                submodule.update(true, Some(&mut options))?;
            }
            Ok(())
        })
        .unwrap();
    let inside = std::fs::read_to_string(dest.path().join("sub/inside.txt")).unwrap();
    assert_eq!(inside, "from the submodule\n");
    assert_eq!(
        scope.requests(),
        2,
        "the submodule's clone went through the scope's transport"
    );
}

#[test]
fn a_submodule_pointing_at_an_unopened_port_is_refused() {
    let f = fixture();
    let daemon = GitDaemon::start(&f.root);
    let target = Counter::start();
    let hostile = format!("git://127.0.0.1:{}/internal.git", target.port);
    let parent = bare_repo_with(
        &f.root,
        "parent",
        &[&[("top.txt", b"top\n")]],
        &[("sub", &hostile, &f.shas[0])],
    );
    let policy = policy_opening(&[format!("127.0.0.1:{}", daemon.port)]);
    let scope = Scope::new(policy.clone());
    let dest = tempfile::tempdir().unwrap();
    let url = daemon.url("parent.git");
    let err = scope
        .run(|| {
            let repo = shallow_fetch(&url, &parent[0], dest.path())?;
            repo.set_head_detached(git2::Oid::from_str(&parent[0]).unwrap())?;
            repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))?;
            for mut submodule in repo.submodules()? {
                // The caller's check refuses it ...
                assert!(git::check_remote(&policy, submodule.url().unwrap().unwrap()).is_err());
                // ... and so does the transport, when a caller forgets.
                submodule.update(true, None)?;
            }
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    assert_eq!(target.connections(), 0);
}

// ---- smart HTTP ------------------------------------------------------------------------------

/// A smart HTTP git server over `root`; `private.git` needs alice:`password`.
fn git_http_server(root: &Path, password: &'static str) -> HttpServer {
    let root = root.to_path_buf();
    HttpServer::start(move |request| {
        if request.path.starts_with("/private.git/")
            && request.header("authorization") != Some(basic("alice", password).as_str())
        {
            return Reply::unauthorized();
        }
        Reply::Git { root: root.clone() }
    })
}

#[test]
fn ls_remote_and_depth_one_fetch_over_smart_http() {
    let f = fixture();
    let server = git_http_server(&f.root, "unused");
    let scope = Scope::new(policy_opening(&[format!("127.0.0.1:{}", server.port)]));
    let url = server.url("/public.git");
    let refs = scope.run(|| ls_remote(&url)).unwrap();
    assert!(
        refs.contains(&("refs/heads/main".to_string(), f.shas[1].clone())),
        "{refs:?}"
    );
    let dest = tempfile::tempdir().unwrap();
    let repo = scope
        .run(|| shallow_fetch(&url, &f.shas[1], dest.path()))
        .unwrap();
    assert_shallow_commit(&repo, &f.shas[1], &f.shas[0], "b.txt");
    let requests = server.requests();
    assert_eq!(
        requests[0].target(),
        "/public.git/info/refs?service=git-upload-pack"
    );
    let post = requests
        .iter()
        .find(|r| r.method == "POST")
        .expect("a POST");
    assert_eq!(post.path, "/public.git/git-upload-pack");
    assert_eq!(
        post.header("content-type"),
        Some("application/x-git-upload-pack-request")
    );
    assert_eq!(
        post.header("accept"),
        Some("application/x-git-upload-pack-result")
    );
    let deepen = String::from_utf8_lossy(&post.body).to_string();
    assert!(
        deepen.contains("deepen 1"),
        "the POST asked for depth 1: {deepen}"
    );
}

#[test]
fn credentials_are_asked_for_on_401_with_the_exact_url() {
    let f = fixture();
    bare_repo(&f.root, "private", &[&[("secret.txt", b"private\n")]]);
    let server = git_http_server(&f.root, "right");
    let origin = format!("http://127.0.0.1:{}", server.port);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let scope = Scope::builder(policy_opening(&[format!("127.0.0.1:{}", server.port)]))
        .credentials({
            let (asked, origin) = (asked.clone(), origin.clone());
            move |url| {
                asked.lock().unwrap().push(url.to_string());
                (url.origin().ascii_serialization() == origin)
                    .then(|| Credentials::new("alice", "right"))
            }
        })
        .build();
    let url = server.url("/private.git");
    let refs = scope.run(|| ls_remote(&url)).unwrap();
    assert!(!refs.is_empty());
    let dest = tempfile::tempdir().unwrap();
    let sha = refs[0].1.clone();
    scope
        .run(|| shallow_fetch(&url, &sha, dest.path()))
        .unwrap();
    assert_eq!(
        *asked.lock().unwrap(),
        vec![format!(
            "{origin}/private.git/info/refs?service=git-upload-pack"
        )],
        "asked once, with the URL being requested; the credentials are reused for the origin"
    );
    let requests = server.requests();
    assert!(
        requests[0].header("authorization").is_none(),
        "not sent before a 401"
    );
    assert!(
        requests[1..]
            .iter()
            .all(|r| r.header("authorization") == Some(basic("alice", "right").as_str()))
    );
}

#[test]
fn credentials_never_follow_a_redirect_to_another_host() {
    let f = fixture();
    bare_repo(&f.root, "private", &[&[("secret.txt", b"private\n")]]);
    // A: the real server, wants alice:secret-for-a.
    let real = git_http_server(&f.root, "secret-for-a");
    // B: asks for credentials, then redirects to A.
    let redirector = HttpServer::start({
        let a = real.url("");
        move |request| {
            if request.header("authorization").is_none() {
                return Reply::unauthorized();
            }
            Reply::redirect(&format!("{a}{}", request.target()))
        }
    });
    let a = format!("http://127.0.0.1:{}", real.port);
    let b = format!("http://127.0.0.1:{}", redirector.port);
    let scope = Scope::builder(policy_opening(&[
        format!("127.0.0.1:{}", real.port),
        format!("127.0.0.1:{}", redirector.port),
    ]))
    .credentials({
        let (a, b) = (a.clone(), b.clone());
        move |url| {
            let origin = url.origin().ascii_serialization();
            if origin == a {
                Some(Credentials::new("alice", "secret-for-a"))
            } else if origin == b {
                Some(Credentials::new("alice", "secret-for-b"))
            } else {
                None
            }
        }
    })
    .build();
    let url = redirector.url("/private.git");
    let refs = scope.run(|| ls_remote(&url)).unwrap();
    let dest = tempfile::tempdir().unwrap();
    scope
        .run(|| shallow_fetch(&url, &refs[0].1, dest.path()))
        .unwrap();

    let secret_b = basic("alice", "secret-for-b");
    let secret_a = basic("alice", "secret-for-a");
    for r in real.requests() {
        assert_ne!(
            r.header("authorization"),
            Some(secret_b.as_str()),
            "B's secret reached A"
        );
    }
    for r in redirector.requests() {
        assert_ne!(
            r.header("authorization"),
            Some(secret_a.as_str()),
            "A's secret reached B"
        );
    }
    assert!(
        real.requests()
            .iter()
            .any(|r| r.header("authorization") == Some(secret_a.as_str())),
        "A got its own credentials"
    );
    // The POSTs went to where the first request was redirected.
    assert!(real.requests().iter().any(|r| r.method == "POST"));
    assert!(redirector.requests().iter().all(|r| r.method == "GET"));
}

#[test]
fn credentials_are_not_given_to_a_host_they_were_not_returned_for() {
    // The provider binds its secret to one host; another server answering 401 gets nothing.
    let f = fixture();
    let trusted = git_http_server(&f.root, "right");
    let stranger = HttpServer::start(|_| Reply::unauthorized());
    let trusted_origin = format!("http://127.0.0.1:{}", trusted.port);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let scope = Scope::builder(policy_opening(&[
        format!("127.0.0.1:{}", trusted.port),
        format!("127.0.0.1:{}", stranger.port),
    ]))
    .credentials({
        let asked = asked.clone();
        move |url| {
            asked
                .lock()
                .unwrap()
                .push(url.origin().ascii_serialization());
            (url.origin().ascii_serialization() == trusted_origin)
                .then(|| Credentials::new("alice", "right"))
        }
    })
    .build();
    let err = scope
        .run(|| ls_remote(&stranger.url("/private.git")))
        .unwrap_err();
    assert!(matches!(err, Error::Authentication { .. }), "{err}");
    assert!(err.to_string().contains("none are given"), "{err}");
    assert_eq!(stranger.requests().len(), 1, "no retry without credentials");
    assert!(stranger.requests()[0].header("authorization").is_none());
    assert_eq!(asked.lock().unwrap().len(), 1);
}

#[test]
fn wrong_credentials_fail_once_without_a_loop() {
    let f = fixture();
    bare_repo(&f.root, "private", &[&[("secret.txt", b"private\n")]]);
    let server = git_http_server(&f.root, "right");
    let calls = Arc::new(Mutex::new(0));
    let scope = Scope::builder(policy_opening(&[format!("127.0.0.1:{}", server.port)]))
        .credentials({
            let calls = calls.clone();
            move |_| {
                *calls.lock().unwrap() += 1;
                Some(Credentials::new("alice", "wrong"))
            }
        })
        .build();
    let err = scope
        .run(|| ls_remote(&server.url("/private.git")))
        .unwrap_err();
    assert!(matches!(err, Error::Authentication { .. }), "{err}");
    assert!(err.to_string().contains("refused the credentials"), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "the password is not in the message"
    );
    assert_eq!(
        server.requests().len(),
        2,
        "one request without, one with credentials"
    );
    assert_eq!(*calls.lock().unwrap(), 1);
}

#[test]
fn git_http_redirect_to_an_unopened_port_is_refused() {
    let target = Counter::start();
    let front = HttpServer::start({
        let hop = format!(
            "http://127.0.0.1:{}/public.git/info/refs?service=git-upload-pack",
            target.port
        );
        move |_| Reply::redirect(&hop)
    });
    let scope = Scope::new(policy_opening(&[format!("127.0.0.1:{}", front.port)]));
    let err = scope
        .run(|| ls_remote(&front.url("/public.git")))
        .unwrap_err();
    assert!(matches!(err, Error::RedirectRefused { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", target.port)),
        "{err}"
    );
    assert_eq!(target.connections(), 0);
}

#[test]
fn git_http_redirect_to_another_host_is_refused() {
    let f = fixture();
    let other = git_http_server(&f.root, "unused");
    let front = HttpServer::start({
        let hop = format!(
            "http://localhost:{}/public.git/info/refs?service=git-upload-pack",
            other.port
        );
        move |_| Reply::redirect(&hop)
    });
    // Both are opened: the same-host rule alone refuses the hop.
    let scope = Scope::new(policy_opening(&[
        format!("127.0.0.1:{}", front.port),
        format!("localhost:{}", other.port),
    ]));
    let err = scope
        .run(|| ls_remote(&front.url("/public.git")))
        .unwrap_err();
    assert!(matches!(err, Error::Redirect { .. }), "{err}");
    assert!(err.to_string().contains("same host"), "{err}");
    assert!(other.requests().is_empty());
}

#[test]
fn fetch_over_the_byte_budget_stops_while_downloading_http() {
    let f = fixture();
    bare_repo(&f.root, "big", &[&[("noise.bin", &noise(4 << 20, 11))]]);
    let server = git_http_server(&f.root, "unused");
    let limit = 256 * 1024;
    let scope = Scope::builder(policy_opening(&[format!("127.0.0.1:{}", server.port)]))
        .max_bytes(limit)
        .build();
    let url = server.url("/big.git");
    let sha = scope.run(|| ls_remote(&url)).unwrap()[0].1.clone();
    let dest = tempfile::tempdir().unwrap();
    let err = scope
        .run(|| shallow_fetch(&url, &sha, dest.path()).map(|_| ()))
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit: l } if l == limit),
        "{err}"
    );
    assert!(
        scope.received() < limit + 1024 * 1024,
        "{}",
        scope.received()
    );
}

#[test]
fn an_http_git_server_that_trickles_bytes_is_stopped_by_the_deadline() {
    let server = HttpServer::start(|_| Reply::Trickle {
        content_type: "application/x-git-upload-pack-advertisement".into(),
        body: b"001e# service=git-upload-pack\n".to_vec(),
        interval: Duration::from_millis(100),
    });
    let scope = Scope::builder(policy_opening(&[format!("127.0.0.1:{}", server.port)]))
        .timeout(Duration::from_secs(1))
        .build();
    let started = Instant::now();
    let err = scope
        .run(|| ls_remote(&server.url("/slow.git")))
        .unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_dumb_http_server_is_refused_with_a_clear_message() {
    let server = HttpServer::start(|_| {
        Reply::status(200, "0000000000000000000000000000000000000000\tHEAD\n")
    });
    let scope = Scope::new(policy_opening(&[format!("127.0.0.1:{}", server.port)]));
    let err = scope
        .run(|| ls_remote(&server.url("/dumb.git")))
        .unwrap_err();
    assert!(matches!(err, Error::NotSmartHttp { .. }), "{err}");
}

#[test]
fn the_http_transport_runs_inside_spawn_blocking() {
    // kiln calls libgit2 from tokio's blocking pool: the transport's own runtime must work there,
    // and a scope made in async code may be dropped there too.
    let f = fixture();
    let server = git_http_server(&f.root, "unused");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = server.url("/public.git");
    let policy = policy_opening(&[format!("127.0.0.1:{}", server.port)]);
    let refs = runtime.block_on(async move {
        let scope = Scope::new(policy);
        let inner = scope.clone();
        let refs = tokio::task::spawn_blocking(move || inner.run(|| ls_remote(&url)))
            .await
            .unwrap()
            .unwrap();
        drop(scope); // the last handle, dropped on a worker thread
        refs
    });
    assert!(
        refs.iter().any(|(name, _)| name == "refs/heads/main"),
        "{refs:?}"
    );
}

#[tokio::test]
async fn the_http_transport_does_not_panic_on_an_async_worker() {
    // Blocking a worker is the caller's mistake, but it must not panic (no nested block_on).
    let f = fixture();
    let server = git_http_server(&f.root, "unused");
    let scope = Scope::new(policy_opening(&[format!("127.0.0.1:{}", server.port)]));
    let refs = scope.run(|| ls_remote(&server.url("/public.git"))).unwrap();
    assert!(
        refs.iter().any(|(name, _)| name == "refs/heads/main"),
        "{refs:?}"
    );
}
