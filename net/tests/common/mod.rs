//! Real servers on 127.0.0.1 for the integration tests: a small HTTP/1.1 server (fixed replies,
//! redirects, trickled bodies, `git http-backend` as CGI, HTTP Basic auth), `git daemon`, a TCP
//! listener that only counts connections, and git repositories made with the git command line.
//! Every server stops (and every process it started is killed by its PID) when it is dropped.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The `git` command, or a failure that says how to get it.
pub fn git() -> Command {
    let found = Command::new("git")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "these tests need git (git daemon, git http-backend): install it with `apt-get install git`"
    );
    let mut command = Command::new("git");
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "kiln")
        .env("GIT_AUTHOR_EMAIL", "kiln@kiln.invalid")
        .env("GIT_COMMITTER_NAME", "kiln")
        .env("GIT_COMMITTER_EMAIL", "kiln@kiln.invalid")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z");
    command
}

pub fn run(mut command: Command) -> String {
    let output = command.output().expect("run git");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A bare repository `root/name.git` with one commit per entry of `commits` (each a list of files),
/// serving any commit by SHA. Returns the SHAs, oldest first.
pub fn bare_repo(root: &Path, name: &str, commits: &[&[(&str, &[u8])]]) -> Vec<String> {
    bare_repo_with(root, name, commits, &[])
}

/// [`bare_repo`] with gitlinks (`path`, `url`, `sha`) recorded in the last commit, as
/// `git submodule add` would, without fetching anything.
pub fn bare_repo_with(
    root: &Path,
    name: &str,
    commits: &[&[(&str, &[u8])]],
    submodules: &[(&str, &str, &str)],
) -> Vec<String> {
    let work = root.join(format!("{name}.work"));
    std::fs::create_dir_all(&work).unwrap();
    let mut init = git();
    init.args(["init", "-q", "-b", "main"]).arg(&work);
    run(init);
    let mut shas = Vec::new();
    for (i, files) in commits.iter().enumerate() {
        for (path, content) in files.iter() {
            let file = work.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
        }
        let mut add = git();
        add.arg("-C").arg(&work).args(["add", "-A"]);
        run(add);
        if i + 1 == commits.len() && !submodules.is_empty() {
            let mut gitmodules = String::new();
            for (path, url, sha) in submodules {
                gitmodules.push_str(&format!(
                    "[submodule \"{path}\"]\n\tpath = {path}\n\turl = {url}\n"
                ));
                let mut link = git();
                link.arg("-C").arg(&work).args([
                    "update-index",
                    "--add",
                    "--cacheinfo",
                    &format!("160000,{sha},{path}"),
                ]);
                run(link);
            }
            std::fs::write(work.join(".gitmodules"), gitmodules).unwrap();
            let mut add = git();
            add.arg("-C").arg(&work).args(["add", ".gitmodules"]);
            run(add);
        }
        let mut commit = git();
        commit.arg("-C").arg(&work).args([
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            &format!("commit {i}"),
        ]);
        run(commit);
        let mut head = git();
        head.arg("-C").arg(&work).args(["rev-parse", "HEAD"]);
        shas.push(run(head));
    }
    let bare = root.join(format!("{name}.git"));
    let mut clone = git();
    clone.args(["clone", "-q", "--bare"]).arg(&work).arg(&bare);
    run(clone);
    let mut config = git();
    config
        .arg("-C")
        .arg(&bare)
        .args(["config", "uploadpack.allowAnySHA1InWant", "true"]);
    run(config);
    std::fs::remove_dir_all(&work).unwrap();
    shas
}

/// Bytes that do not compress (xorshift), so a pack holding them is as large as they are.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A free port on 127.0.0.1 (bound, then released for a server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `git daemon` on 127.0.0.1, serving `base` (every repository exported).
pub struct GitDaemon {
    child: Child,
    pub port: u16,
}

impl GitDaemon {
    pub fn start(base: &Path) -> GitDaemon {
        let exec_path = run({
            let mut c = git();
            c.arg("--exec-path");
            c
        });
        let binary = Path::new(&exec_path).join("git-daemon");
        assert!(
            binary.exists(),
            "{} is missing: install git's daemon (Debian: apt-get install git)",
            binary.display()
        );
        for _ in 0..5 {
            let port = free_port();
            let mut command = Command::new(&binary);
            command
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env(
                    "PATH",
                    format!("{exec_path}:{}", std::env::var("PATH").unwrap_or_default()),
                )
                .arg(format!("--base-path={}", base.display()))
                .arg("--export-all")
                .arg("--reuseaddr")
                .arg("--informative-errors")
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(base)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = command.spawn().expect("start git daemon");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return GitDaemon { child, port };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("git daemon did not start listening on 127.0.0.1");
    }

    pub fn url(&self, path: &str) -> String {
        format!("git://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        // Child::kill signals this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP listener that accepts and counts connections, and closes them.
pub struct Counter {
    pub port: u16,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Counter {
    pub fn start() -> Counter {
        Counter::serve(|_| {})
    }

    /// Accept connections and hand each to `each` (in the accepting thread).
    pub fn serve(each: impl Fn(TcpStream) + Send + 'static) -> Counter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    c.fetch_add(1, Ordering::SeqCst);
                    each(stream);
                }
            }
        });
        Counter {
            port,
            count,
            stop,
            thread: Some(thread),
        }
    }

    pub fn connections(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request as the HTTP server received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

/// What the HTTP server answers.
pub enum Reply {
    /// A complete response.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Headers, then `body` one byte every `interval`, over and over (for at most a minute).
    Trickle {
        content_type: String,
        body: Vec<u8>,
        interval: Duration,
    },
    /// `git http-backend` over the repositories under `root`.
    Git { root: PathBuf },
}

impl Reply {
    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn redirect(location: &str) -> Reply {
        Reply::Full {
            status: 302,
            headers: vec![("Location".into(), location.to_string())],
            body: Vec::new(),
        }
    }

    pub fn unauthorized() -> Reply {
        Reply::Full {
            status: 401,
            headers: vec![(
                "WWW-Authenticate".into(),
                "Basic realm=\"kiln test\"".into(),
            )],
            body: b"credentials needed".to_vec(),
        }
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 (one connection per request: every reply closes it).
pub struct HttpServer {
    pub port: u16,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (l, s) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (handler, log, stop) = (handler.clone(), l.clone(), s.clone());
                std::thread::spawn(move || serve(stream, &*handler, &log, &stop));
            }
        });
        HttpServer {
            port,
            log,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Request>>, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(request) = read_request(&stream) else {
        return;
    };
    log.lock().unwrap().push(request.clone());
    let mut out = stream;
    let _ = match handler(&request) {
        Reply::Full {
            status,
            headers,
            body,
        } => write_full(&mut out, status, &headers, &body),
        Reply::Trickle {
            content_type,
            body,
            interval,
        } => trickle(&mut out, &content_type, &body, interval, stop),
        Reply::Git { root } => cgi(&mut out, &root, &request),
    };
    let _ = out.shutdown(Shutdown::Both);
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Some(Request {
        method,
        path,
        query,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Other",
    }
}

fn write_full(
    out: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

fn trickle(
    out: &mut TcpStream,
    content_type: &str,
    body: &[u8],
    interval: Duration,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    out.write_all(
        format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )?;
    out.flush()?;
    let started = Instant::now();
    for byte in body.iter().cycle() {
        // Bounded: a trickle ends by itself after a minute.
        if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        out.write_all(&[*byte])?;
        out.flush()?;
        std::thread::sleep(interval);
    }
    Ok(())
}

/// Run `git http-backend` as a CGI program for `request` and relay its answer.
fn cgi(out: &mut TcpStream, root: &Path, request: &Request) -> std::io::Result<()> {
    let mut command = git();
    command
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &request.method)
        .env("PATH_INFO", &request.path)
        .env("QUERY_STRING", &request.query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", request.body.len().to_string())
        .env(
            "CONTENT_TYPE",
            request.header("content-type").unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(protocol) = request.header("git-protocol") {
        command.env("GIT_PROTOCOL", protocol);
    }
    let mut child = command.spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let body = request.body.clone();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut output = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut output)?;
    let _ = writer.join();
    let _ = child.wait();
    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, gap)) = split else {
        return write_full(out, 500, &[], b"http-backend sent no headers");
    };
    let head = String::from_utf8_lossy(&output[..end]).to_string();
    let body = &output[end + gap..];
    let mut status = 200;
    let mut headers = Vec::new();
    for line in head.lines() {
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("status") {
                status = value
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(500);
            } else {
                headers.push((name.to_string(), value.to_string()));
            }
        }
    }
    write_full(out, status, &headers, body)
}

/// An `Authorization` header value for HTTP Basic.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
