//! Test support: the real engine, a git server on loopback, repositories made by the tests, and the
//! kiln binary. A missing component fails the test with the command that starts it.

pub mod browser;
pub mod conda;
pub mod cran;
pub mod git_http;
pub mod hub_login;
pub mod in_process;
pub mod jupyterhub;
pub mod npm_registry;
pub mod package_index;
pub mod records;
pub mod redirector;
pub mod registry_proxy;
pub mod sbom;
pub mod service;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const SETUP: &str = "run the whole suite with `bash tests/run.sh`, which starts the engine \
(tests/services/engine.sh) and makes the base image (kiln base bootstrap)";

/// The `kiln` binary, with host networking (this machine has no bridge network) and the host's CA
/// bundle trusted during builds (TLS is inspected here).
pub fn kiln() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.env("KILN_NETWORK", "host");
    if Path::new("/etc/ssl/certs/ca-certificates.crt").exists()
        && std::env::var_os("SSL_CERT_FILE").is_none()
    {
        command.env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt");
    }
    command
}

/// The docker CLI, to check what kiln made.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs")
}

/// Fail unless the engine answers and has the base image.
pub fn require_engine() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECK.get_or_init(|| {
        let out = Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            _ => return Err(format!("no Docker engine answers: {SETUP}")),
        }
        let base = docker(&[
            "image",
            "inspect",
            kiln_buildpacks::options::DEFAULT_BASE_IMAGE,
        ]);
        if !base.status.success() {
            return Err(format!(
                "the base image {} is missing: {SETUP}",
                kiln_buildpacks::options::DEFAULT_BASE_IMAGE
            ));
        }
        Ok(())
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// Run `kiln ARGS`, assert it succeeded (with its standard error as the message), and return its
/// standard output.
/// What `command` prints in a new container of `image` without a network (it must succeed).
pub fn in_image(image: &str, command: &[&str]) -> String {
    let mut args = vec!["run", "--rm", "--network", "none", image];
    args.extend_from_slice(command);
    let out = docker(&args);
    assert!(
        out.status.success(),
        "{command:?} in {image}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn kiln_ok(args: &[&str]) -> Vec<u8> {
    let out = kiln().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "kiln {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// JSON-lines events printed by `kiln ... --json-logs`.
pub fn events(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("each line is a JSON event"))
        .collect()
}

/// The events' messages, one a line: the build's log as people read it.
pub fn messages(events: &[serde_json::Value]) -> String {
    events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn last_event(stdout: &[u8]) -> serde_json::Value {
    events(stdout).pop().expect("at least one event")
}

/// Run a git command in `dir`, with a fixed identity and clock.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "kiln tests")
        .env("GIT_AUTHOR_EMAIL", "tests@kiln.invalid")
        .env("GIT_COMMITTER_NAME", "kiln tests")
        .env("GIT_COMMITTER_EMAIL", "tests@kiln.invalid")
        .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05Z")
        .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05Z")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Copy a folder (files, folders, links, modes) into `dest`.
pub fn copy_tree(from: &Path, dest: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(dest)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A git repository served by a git daemon on loopback.
pub struct GitServer {
    pub root: tempfile::TempDir,
    daemon: Child,
    pub port: u16,
}

impl GitServer {
    pub fn start() -> GitServer {
        let root = tempfile::tempdir().unwrap();
        let port = free_port();
        // git-daemon itself (not `git daemon`, which would leave it running when stopped).
        let exec_path = String::from_utf8(
            Command::new("git")
                .arg("--exec-path")
                .output()
                .expect("git runs")
                .stdout,
        )
        .unwrap();
        let daemon = Command::new(format!("{}/git-daemon", exec_path.trim()))
            .args([
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", root.path().display()),
                "--enable=upload-pack",
            ])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts (git is installed)");
        wait_for_port(port);
        GitServer { root, daemon, port }
    }

    /// Create (or add a commit to) the repository `name` with `files`; returns the commit SHA.
    pub fn commit(&self, name: &str, files: &[(&str, &str)], message: &str) -> String {
        let dir = self.init(name);
        for (path, content) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        git(&dir, &["add", "--all"]);
        git(&dir, &["commit", "--quiet", "--allow-empty", "-m", message]);
        git(&dir, &["rev-parse", "HEAD"])
    }

    /// The repository folder, created and initialised when new.
    pub fn init(&self, name: &str) -> PathBuf {
        let dir = self.root.path().join(name);
        if !dir.join(".git").exists() {
            std::fs::create_dir_all(&dir).unwrap();
            git(&dir, &["init", "--quiet"]);
            git(&dir, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
        }
        dir
    }

    /// Serve a copy of an example repository as `name`; returns the commit SHA.
    pub fn example(&self, example: &str, name: &str) -> String {
        let dir = self.init(name);
        copy_tree(&examples().join(example), &dir);
        self.commit(name, &[], &format!("example {example}"))
    }

    pub fn repo_dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for GitServer {
    /// Stop the daemon and remove the images built from its repositories: their names end in
    /// `<port>-<repository>` (local, or under a registry prefix), so other tests' images stay.
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let mine = format!("{}-", self.port);
        remove_images(|repository| {
            repository
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with(&mine))
        });
    }
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/repos")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn services_script(script: &str) -> String {
    format!("{}/tests/services/{script}", env!("CARGO_MANIFEST_DIR"))
}

/// Start one of the Python servers of `tests/services/` (`python3 SCRIPT serve DIR PORT ARGS...`)
/// on a free loopback port, once it answers; the caller stops it by its PID.
pub fn serve_python(script: &str, dir: &Path, args: &[&str]) -> (Child, u16) {
    let port = free_port();
    let child = Command::new("python3")
        .arg(services_script(script))
        .args(["serve", dir.to_str().unwrap(), &port.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 runs tests/services/{script}: {e}"));
    wait_for_port(port);
    (child, port)
}

/// Run one of those scripts' other commands (`python3 SCRIPT COMMAND DIR ARGS...`), which must
/// succeed; what it prints, trimmed.
pub fn run_python(script: &str, command: &str, dir: &Path, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(services_script(script))
        .args([command, dir.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The lines of `requests.log` in a test server's folder: what it was asked for, in order.
pub fn requests_log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("requests.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port} after 10 s");
}

/// A unique name for images made by one test, so that tests do not see each other's images.
pub fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Run the example's `verify` inside `image` (without network) and fail with its output otherwise.
pub fn assert_verify(image: &str) {
    let verify = docker(&["run", "--rm", "--network", "none", image, "./verify"]);
    assert!(
        verify.status.success(),
        "{image}: verify failed:\n{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// Remove an image made by a test.
pub fn remove_image(name: &str) {
    let _ = docker(&["image", "rm", "--force", name]);
}

/// A CNCF Distribution registry (Debian's docker-registry) on loopback, optionally with htpasswd auth.
pub struct Registry {
    /// Its configuration and storage, removed with it.
    _dir: tempfile::TempDir,
    process: Child,
    pub port: u16,
}

impl Registry {
    pub fn start(auth: Option<(&str, &str)>) -> Registry {
        Registry::start_with(auth, true)
    }

    /// A registry that refuses `DELETE` (405, as Distribution does unless deletion is enabled).
    pub fn start_without_delete() -> Registry {
        Registry::start_with(None, false)
    }

    fn start_with(auth: Option<(&str, &str)>, delete: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}/data\n  delete:\n    enabled: {delete}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().display()
        );
        if let Some((user, password)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .unwrap_or_else(|_| panic!("htpasswd is missing (apache2-utils): {SETUP}"));
            std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kiln-tests\n    path: {}/htpasswd\n",
                dir.path().display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let process = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|_| panic!("docker-registry is missing: {SETUP}"));
        wait_for_port(port);
        Registry {
            _dir: dir,
            process,
            port,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The tags of a repository (`name`, without the host), as the registry lists them.
    pub fn tags(&self, name: &str) -> Vec<String> {
        let out = Command::new("skopeo")
            .args(["list-tags", "--tls-verify=false"])
            .arg(format!("docker://{}/{name}", self.host()))
            .output()
            .expect("skopeo runs");
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut tags: Vec<String> = listed["Tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        tags.sort();
        tags
    }

    /// The manifest digest of `name:tag` (`None` when absent), read with skopeo.
    pub fn digest(&self, reference: &str, creds: Option<&str>) -> Option<String> {
        let mut command = Command::new("skopeo");
        command.args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"]);
        if let Some(c) = creds {
            command.args(["--creds", c]);
        }
        let out = command
            .arg(format!("docker://{reference}"))
            .output()
            .expect("skopeo runs");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Registry {
    /// Stop the registry and remove the engine's images named under it (pulled or tagged for a push).
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let prefix = format!("{}/", self.host());
        remove_images(|repository| repository.starts_with(&prefix));
    }
}

/// Remove the engine's images whose repository (the name without its tag) matches.
pub fn remove_images(matches: impl Fn(&str) -> bool) {
    let listed = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for image in String::from_utf8_lossy(&listed.stdout).lines() {
        let repository = image.rsplit_once(':').map_or(image, |(r, _)| r);
        if !matches(repository) {
            continue;
        }
        // A session being removed may still hold the image for a moment.
        for _ in 0..40 {
            let out = docker(&["rmi", image]);
            let error = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !error.contains("is using") {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Start `kiln run` (`command`, with its arguments set) and read the session URL it prints first:
/// the child, the URL, the session's port and its token.
pub fn start_kiln_run(command: &mut Command) -> (Child, String, u16, String) {
    use std::io::BufRead;
    // Its standard error goes to a file, read when it prints no URL (a failed build says why).
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(stderr.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut url = String::new();
    stdout.read_line(&mut url).unwrap();
    let url = url.trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("token="),
        "kiln run printed {url:?}; its standard error:\n{}",
        std::fs::read_to_string(stderr.path()).unwrap_or_default()
    );
    let port: u16 = url["http://127.0.0.1:".len()..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let token = url.rsplit("token=").next().unwrap().to_string();
    (child, url, port, token)
}

/// The HTTP status of a session's `/api/status` on loopback, with `token` if given (0 when nothing
/// answers).
pub fn session_status(port: u16, token: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let auth = token
        .map(|t| format!("Authorization: token {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A second Docker engine for one test, with its own data root and socket, started without a
/// bridge network (as this machine allows), stopped by its PID when dropped.
pub struct SecondEngine {
    /// `unix://<socket>`, for `DOCKER_HOST`.
    pub host: String,
    dockerd: Option<Child>,
    _root: tempfile::TempDir,
}

impl SecondEngine {
    pub fn start() -> SecondEngine {
        let root = tempfile::tempdir().unwrap();
        let host = format!("unix://{}", root.path().join("docker.sock").display());
        let dockerd = Command::new("dockerd")
            .arg("--host")
            .arg(&host)
            .arg("--data-root")
            .arg(root.path().join("data"))
            .arg("--exec-root")
            .arg(root.path().join("exec"))
            .arg("--pidfile")
            .arg(root.path().join("docker.pid"))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("dockerd does not start ({e}): {SETUP}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Command::new("docker")
            .args(["-H", &host, "version"])
            .output()
            .unwrap()
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "the second dockerd did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        SecondEngine {
            host,
            dockerd: Some(dockerd),
            _root: root,
        }
    }

    /// Give it the base image of the main engine.
    pub fn load_base_image(&self) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker save {} | docker -H {} load -q",
                kiln_buildpacks::options::DEFAULT_BASE_IMAGE,
                self.host
            ))
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Stop the engine (SIGTERM to our own child) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut dockerd) = self.dockerd.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(dockerd.id().to_string())
                .status();
            let _ = dockerd.wait();
        }
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        self.stop();
    }
}
