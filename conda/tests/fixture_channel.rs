//! kiln-conda against the fixture channel (tests/conda/make-channel.sh), served over HTTP on
//! loopback and mapped to `conda-forge` as a mirror: solve, install, pack, the lock, and the errors.

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The static file server that serves the channel, from the conda package folder.
const SERVE_CHANNEL: &str = "/../tests/services/conda-channel.py";
use std::time::{Duration, Instant};

use kiln_conda::{CondaError, CondaSettings, Lock, Request, install, pack, solve};
use url::Url;

/// The fixture channel's folder: `KILN_TEST_CONDA_CHANNEL`, or where tests/run.sh builds it.
fn channel_dir() -> PathBuf {
    let dir = std::env::var_os("KILN_TEST_CONDA_CHANNEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kiln-conda-fixture/channel"));
    assert!(
        dir.join("noarch/repodata.json").exists() && dir.join("linux-64/repodata.json").exists(),
        "the fixture conda channel is missing at {}: build it with `bash tests/conda/make-channel.sh {}` \
         (tests/run.sh does), or point KILN_TEST_CONDA_CHANNEL at one",
        dir.display(),
        dir.display()
    );
    dir
}

/// tests/services/conda-channel.py (a static file server) on a free loopback port, stopped (by its PID) on drop.
struct ChannelServer {
    child: Child,
    port: u16,
}

impl ChannelServer {
    fn start(dir: &Path) -> ChannelServer {
        let port = free_port();
        let child = Command::new("python3")
            .arg(format!("{}{SERVE_CHANNEL}", env!("CARGO_MANIFEST_DIR")))
            .arg(port.to_string())
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (it serves the fixture channel)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the channel server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ChannelServer { child, port }
    }

    fn url(&self) -> Url {
        Url::parse(&format!("http://127.0.0.1:{}/", self.port)).unwrap()
    }
}

impl Drop for ChannelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn settings(cache: &Path, mirror: Url) -> CondaSettings {
    CondaSettings::new(cache, vec![("conda-forge".to_string(), mirror)])
}

fn request(specs: &[&str]) -> Request {
    Request {
        channels: vec!["conda-forge".into()],
        specs: specs.iter().map(|s| s.to_string()).collect(),
    }
}

const ENV: &[&str] = &["python=3.11", "pip", "kiln-greet", "kiln-hello"];

#[tokio::test]
async fn solves_installs_and_packs_deterministically() {
    let server = ChannelServer::start(&channel_dir());
    let cache = tempfile::tempdir().unwrap();
    let settings = settings(cache.path(), server.url());
    let lock = solve(&settings, &request(ENV)).await.unwrap();
    let names: Vec<&str> = lock.packages.iter().map(|p| p.name.as_str()).collect();
    for name in [
        "python",
        "pip",
        "kiln-greet",
        "kiln-hello",
        "libexpat",
        "openssl",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert_eq!(lock.get("kiln-greet").unwrap().version, "0.2.0");
    // The lock names the canonical channel, never the mirror.
    let text = lock.to_explicit();
    assert!(!text.contains("127.0.0.1"), "{text}");
    assert!(text.contains("https://conda.anaconda.org/conda-forge/noarch/kiln-greet-0.2.0-"));

    let mut tars = Vec::new();
    for _ in 0..2 {
        let root = tempfile::tempdir().unwrap();
        let installed = install(&settings, &lock, root.path()).await.unwrap();
        let prefix = installed.prefix();
        assert!(prefix.join("bin/python3.11").exists());
        assert!(prefix.join("bin/kiln-hello").exists());
        assert!(
            prefix
                .join("lib/python3.11/site-packages/kiln_greet/__init__.py")
                .exists()
        );
        // pip's entry point names the final prefix, not the staging root.
        let pip = std::fs::read_to_string(prefix.join("bin/pip")).unwrap();
        assert!(
            pip.starts_with("#!/srv/conda/envs/notebook/bin/python"),
            "{pip}"
        );
        assert!(!prefix.join("CACHEDIR.TAG").exists());
        assert_eq!(
            std::fs::read_to_string(prefix.join("conda-meta/kiln-lock.txt")).unwrap(),
            text
        );
        // No host path (staging root, package cache, mirror) in conda-meta.
        for entry in std::fs::read_dir(prefix.join("conda-meta")).unwrap() {
            let path = entry.unwrap().path();
            let content = std::fs::read_to_string(&path).unwrap();
            for host in [
                root.path().to_str().unwrap(),
                cache.path().to_str().unwrap(),
                "127.0.0.1",
            ] {
                assert!(!content.contains(host), "{} holds {host}", path.display());
            }
        }
        let out = tempfile::tempdir().unwrap();
        let layers = pack(root.path(), 1000, out.path()).unwrap();
        let names: Vec<&str> = layers.iter().map(|l| l.name).collect();
        assert_eq!(names, ["python", "packages", "conda-meta"]);
        assert!(layers[0].packages.contains(&"python".to_string()));
        assert!(layers[0].packages.contains(&"libexpat".to_string()));
        assert!(layers[1].packages.contains(&"kiln-greet".to_string()));
        // Owner, mtime and paths.
        let bytes = std::fs::read(&layers[0].path).unwrap();
        assert_eq!(bytes.len() as u64, layers[0].size);
        assert_eq!(
            layers[0].diff_id,
            format!(
                "sha256:{}",
                hex::encode(sha2::Digest::finalize(
                    <sha2::Sha256 as sha2::Digest>::new_with_prefix(&bytes)
                ))
            )
        );
        let mut archive = tar::Archive::new(bytes.as_slice());
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            assert_eq!(header.uid().unwrap(), 1000);
            assert_eq!(header.gid().unwrap(), 1000);
            assert_eq!(header.mtime().unwrap(), 0);
            assert!(entry.path().unwrap().starts_with("srv"));
        }
        tars.push(layers.into_iter().map(|l| l.diff_id).collect::<Vec<_>>());
    }
    assert!(tars[0] == tars[1], "the same lock packs to the same bytes");
}

#[tokio::test]
async fn a_lock_is_installed_exactly() {
    let server = ChannelServer::start(&channel_dir());
    let cache = tempfile::tempdir().unwrap();
    let settings = settings(cache.path(), server.url());
    let old = solve(&settings, &request(&["python=3.11", "kiln-greet=0.1.0"]))
        .await
        .unwrap();
    assert_eq!(old.get("kiln-greet").unwrap().version, "0.1.0");
    // The lock read back from its text installs 0.1.0, although 0.2.0 is the newest.
    let lock = Lock::parse("kiln-lock.txt", &old.to_explicit()).unwrap();
    assert_eq!(lock, old);
    let root = tempfile::tempdir().unwrap();
    let installed = install(&settings, &lock, root.path()).await.unwrap();
    let record = std::fs::read_dir(installed.prefix().join("conda-meta"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("kiln-greet-"))
        .unwrap();
    assert!(record.starts_with("kiln-greet-0.1.0-"), "{record}");
}

#[tokio::test]
async fn unsolvable_specs_are_explained() {
    let server = ChannelServer::start(&channel_dir());
    let cache = tempfile::tempdir().unwrap();
    let settings = settings(cache.path(), server.url());
    let error = solve(&settings, &request(&["python=3.11", "kiln-conflict"]))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, CondaError::Unsolvable(_)), "{message}");
    assert!(message.contains("kiln-conflict"), "{message}");
    assert!(message.contains("kiln-greet"), "{message}");

    let error = solve(
        &settings,
        &request(&["python=3.11", "kiln-no-such-package"]),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("kiln-no-such-package"), "{error}");
    assert!(error.contains("cannot be solved"), "{error}");
}

#[tokio::test]
async fn an_unreachable_channel_fails_fast() {
    let cache = tempfile::tempdir().unwrap();
    // Nothing listens on this port.
    let dead = Url::parse(&format!("http://127.0.0.1:{}/", free_port())).unwrap();
    let settings = settings(cache.path(), dead.clone());
    let started = Instant::now();
    let error = solve(&settings, &request(&["python"])).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let message = error.to_string();
    assert!(matches!(error, CondaError::Channel { .. }), "{message}");
    assert!(message.contains("conda-forge"), "{message}");
    assert!(message.contains(dead.as_str()), "{message}");
}

#[tokio::test]
async fn a_sha256_mismatch_is_refused() {
    let server = ChannelServer::start(&channel_dir());
    let cache = tempfile::tempdir().unwrap();
    let settings = settings(cache.path(), server.url());
    let good = solve(&settings, &request(&["kiln-hello"])).await.unwrap();
    let hello = good.get("kiln-hello").unwrap();
    let wrong = "0".repeat(64);
    let text = format!("@EXPLICIT\n{}#sha256:{wrong}\n", hello.url);
    let lock = Lock::parse("conda-linux-64.lock", &text).unwrap();
    let root = tempfile::tempdir().unwrap();
    let error = install(&settings, &lock, root.path()).await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, CondaError::Sha256Mismatch { .. }),
        "{message}"
    );
    assert!(message.contains(&hello.sha256), "{message}");
    assert!(message.contains("refusing"), "{message}");
    assert!(
        !root
            .path()
            .join("srv/conda/envs/notebook/bin/kiln-hello")
            .exists(),
        "nothing is installed"
    );
}

/// A conda package whose `info/paths.json` names `path`, made by tests/conda/hostile-package.sh in
/// `channel`; its file name and sha256.
fn hostile_package(channel: &Path, name: &str, path: &str) -> (String, String) {
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/conda/hostile-package.sh"
        ))
        .arg(channel)
        .arg(name)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (file, sha256) = text.trim().split_once(' ').unwrap();
    (file.to_string(), sha256.to_string())
}

/// rattler joins a package's paths to the package folder and the environment as they are: a path
/// with `..` or an absolute one would read a host file into the image, or write onto the host.
#[tokio::test]
async fn a_package_whose_paths_json_escapes_the_environment_is_refused() {
    let channel = tempfile::tempdir().unwrap();
    let escape = format!("kiln-escape-{}", std::process::id());
    for (name, path) in [
        (
            "evil-parent",
            format!("../../../../../../../../tmp/{escape}"),
        ),
        ("evil-absolute", format!("/tmp/{escape}")),
    ] {
        let (file, sha256) = hostile_package(channel.path(), name, &path);
        let server = ChannelServer::start(channel.path());
        let cache = tempfile::tempdir().unwrap();
        let settings = settings(cache.path(), server.url());
        let text = format!(
            "@EXPLICIT\nhttps://conda.anaconda.org/conda-forge/linux-64/{file}#sha256:{sha256}\n"
        );
        let lock = Lock::parse("conda-linux-64.lock", &text).unwrap();
        let root = tempfile::tempdir().unwrap();
        let error = install(&settings, &lock, root.path()).await.unwrap_err();
        assert!(
            matches!(error, CondaError::Escapes { .. }),
            "{name}: {error}"
        );
        assert!(error.to_string().contains(&path), "{error}");
        assert!(
            !Path::new(&format!("/tmp/{escape}")).exists(),
            "{name} wrote onto the host"
        );
    }
}

/// A repository names the channels: under the service's policy, one on a private address is
/// refused before any request, while the operator's mirror on loopback is fetched.
#[tokio::test]
async fn a_channel_or_lock_url_on_a_private_address_is_refused() {
    let server = ChannelServer::start(&channel_dir());
    let cache = tempfile::tempdir().unwrap();
    let mut settings = settings(cache.path(), server.url());
    settings.policy = kiln_net::Policy::public();
    // The mirror (the operator's) is allowed.
    let lock = solve(&settings, &request(&["kiln-hello"])).await.unwrap();
    assert!(lock.get("kiln-hello").is_some());
    // A channel on another loopback port, named by the repository, is not.
    let other = ChannelServer::start(&channel_dir());
    let direct = Request {
        channels: vec![format!("http://127.0.0.1:{}/", other.port)],
        specs: vec!["kiln-hello".into()],
    };
    let error = solve(&settings, &direct).await.unwrap_err();
    assert!(matches!(error, CondaError::Refused { .. }), "{error}");
    assert!(error.to_string().contains("private"), "{error}");
    // A lock's package on a private address is refused before any download.
    let text = format!(
        "@EXPLICIT\nhttp://10.0.0.5/channel/linux-64/x-1.0-0.tar.bz2#sha256:{}\n",
        "0".repeat(64)
    );
    let lock = Lock::parse("conda-linux-64.lock", &text).unwrap();
    let root = tempfile::tempdir().unwrap();
    let error = install(&settings, &lock, root.path()).await.unwrap_err();
    assert!(matches!(error, CondaError::Refused { .. }), "{error}");
}
