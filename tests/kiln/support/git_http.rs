//! Minimal HTTP/1.1 server for tests that serves git repositories over git's
//! "smart HTTP" protocol by running `git http-backend` as a CGI program, and
//! that requires HTTP Basic authentication.
//!
//! Only the standard library is used. Every response carries
//! `Connection: close`; each connection serves exactly one request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest accepted request line or header line, in bytes.
const MAX_LINE: u64 = 16 * 1024;
/// Most header lines accepted in one request (also bounds chunked trailers).
const MAX_HEADERS: usize = 200;
/// Largest accepted (decoded) request body, in bytes.
const MAX_BODY: u64 = 1024 * 1024 * 1024;
/// How long a connection may stay silent before it is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// A test HTTP server serving git repositories via `git http-backend`,
/// protected by HTTP Basic authentication.
pub struct GitHttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    unauthorized: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

/// Settings shared by all connection handlers.
struct Config {
    root: PathBuf,
    username: String,
    password: String,
    unauthorized: Arc<AtomicUsize>,
    /// Every `user:password` a request carried.
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl GitHttpServer {
    /// Serve the git repositories under `root` (bare or non-bare, e.g. root/private.git or root/private) at
    /// http://127.0.0.1:PORT/<name>, requiring `username`/`password` via HTTP Basic auth.
    pub fn start(root: &Path, username: &str, password: &str) -> GitHttpServer {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("git http test server: bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("git http test server: local_addr");
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let stop = Arc::new(AtomicBool::new(false));
        let unauthorized = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let config = Arc::new(Config {
            root,
            username: username.to_string(),
            password: password.to_string(),
            unauthorized: Arc::clone(&unauthorized),
            seen: Arc::clone(&seen),
        });
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("git-http-accept".to_string())
            .spawn(move || accept_loop(listener, thread_stop, config))
            .expect("git http test server: spawn accept thread");
        GitHttpServer {
            addr,
            stop,
            unauthorized,
            seen,
            thread: Some(thread),
        }
    }

    /// Base URL, e.g. "http://127.0.0.1:34567"
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Number of requests answered 401 so far (for asserting that credentials were needed).
    pub fn unauthorized_count(&self) -> usize {
        self.unauthorized.load(Ordering::SeqCst)
    }

    /// Every `user:password` that requests carried (Basic authentication), in order.
    pub fn credentials_seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblock the pending `accept` so the loop notices the flag.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).is_ok();
        if let Some(thread) = self.thread.take()
            && woke
        {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, stop: Arc<AtomicBool>, config: Arc<Config>) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match accepted {
            Ok((stream, _)) => {
                let config = Arc::clone(&config);
                let _ = std::thread::Builder::new()
                    .name("git-http-conn".to_string())
                    .spawn(move || handle_connection(stream, &config));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// A parsed HTTP request head.
struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Request {
    /// Value of the first header named `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn handle_connection(stream: TcpStream, config: &Config) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    // Any error (malformed input, I/O failure) just closes the connection.
    if serve_one(&mut reader, &mut writer, config).is_some() {
        let _ = writer.flush();
        let _ = writer.shutdown(Shutdown::Write);
        // Drain what the client may still send so closing does not reset the
        // connection before it has read the response.
        let _ = writer.set_read_timeout(Some(Duration::from_secs(2)));
        let mut sink = [0u8; 4096];
        let mut drained: usize = 0;
        while let Ok(n) = reader.read(&mut sink) {
            if n == 0 || drained > 16 * 1024 * 1024 {
                break;
            }
            drained += n;
        }
    }
}

/// Handles one request; `None` means the connection should just be closed.
fn serve_one(reader: &mut impl BufRead, writer: &mut impl Write, config: &Config) -> Option<()> {
    let request = read_request_head(reader)?;
    let expects_continue = request
        .header("expect")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));

    if !is_authorized(&request, config) {
        config.unauthorized.fetch_add(1, Ordering::SeqCst);
        if !expects_continue {
            // Consume the body so the client is not reset while still sending.
            read_body(reader, &request)?;
        }
        let response = "HTTP/1.1 401 Unauthorized\r\n\
             WWW-Authenticate: Basic realm=\"kiln-test\"\r\n\
             Content-Length: 0\r\n\
             Connection: close\r\n\r\n";
        writer.write_all(response.as_bytes()).ok()?;
        return Some(());
    }

    if expects_continue {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
        writer.flush().ok()?;
    }
    let body = read_body(reader, &request)?;

    let (status, headers, content) = match run_backend(&request, &body, config) {
        Some(output) => parse_cgi_output(&output),
        None => (
            "500 Internal Server Error".to_string(),
            vec!["Content-Type: text/plain".to_string()],
            b"failed to run git http-backend\n".to_vec(),
        ),
    };

    let mut head = format!("HTTP/1.1 {status}\r\n");
    for header in &headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n", content.len()));
    head.push_str("Connection: close\r\n\r\n");
    writer.write_all(head.as_bytes()).ok()?;
    writer.write_all(&content).ok()?;
    Some(())
}

/// Reads one CRLF- (or LF-) terminated line, without the terminator.
fn read_line(reader: &mut impl BufRead) -> Option<String> {
    let mut buf = Vec::new();
    reader.take(MAX_LINE).read_until(b'\n', &mut buf).ok()?;
    if buf.last() != Some(&b'\n') {
        // EOF before the end of the line, or the line is too long.
        return None;
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).ok()
}

fn read_request_head(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = read_line(reader)?;
    // Tolerate stray empty lines before the request line (RFC 9112 2.2).
    let mut skipped = 0;
    while line.is_empty() {
        skipped += 1;
        if skipped > 4 {
            return None;
        }
        line = read_line(reader)?;
    }
    let mut parts = line.split_ascii_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    // Accept absolute-form targets too ("http://host/path?query").
    let target = match target.find("://") {
        Some(i) => {
            let rest = &target[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        None => target,
    };
    if !target.starts_with('/') {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    let headers = read_header_lines(reader)?;
    Some(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
    })
}

/// Reads `Name: value` lines up to and including the terminating blank line.
fn read_header_lines(reader: &mut impl BufRead) -> Option<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            return Some(headers);
        }
        if headers.len() >= MAX_HEADERS {
            return None;
        }
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
}

fn is_authorized(request: &Request, config: &Config) -> bool {
    let Some(value) = request.header("authorization") else {
        return false;
    };
    let value = value.trim();
    let Some((scheme, credentials)) = value.split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Some(decoded) = base64_decode(credentials.trim()) else {
        return false;
    };
    config
        .seen
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&decoded).into_owned());
    let expected = format!("{}:{}", config.username, config.password);
    decoded == expected.as_bytes()
}

/// Decodes standard base64 (padding optional, ASCII whitespace ignored).
fn base64_decode(input: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }

    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    let mut padding = 0;
    for &c in input.as_bytes() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            padding += 1;
            if padding > 2 {
                return None;
            }
            continue;
        }
        if padding > 0 {
            // Data after padding.
            return None;
        }
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be fewer than a byte (a lone 6-bit group is invalid).
    if bits >= 6 {
        return None;
    }
    Some(out)
}

/// Reads the request body: chunked, by `Content-Length`, or empty.
fn read_body(reader: &mut impl BufRead, request: &Request) -> Option<Vec<u8>> {
    let chunked = request.header("transfer-encoding").is_some_and(|te| {
        te.split(',')
            .any(|part| part.trim().eq_ignore_ascii_case("chunked"))
    });
    if chunked {
        return read_chunked_body(reader);
    }
    match request.header("content-length") {
        Some(len) => {
            let len: u64 = len.trim().parse().ok()?;
            if len > MAX_BODY {
                return None;
            }
            let mut body = Vec::new();
            reader.take(len).read_to_end(&mut body).ok()?;
            (body.len() as u64 == len).then_some(body)
        }
        None => Some(Vec::new()),
    }
}

fn read_chunked_body(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next()?.trim();
        let size = u64::from_str_radix(size, 16).ok()?;
        if size == 0 {
            // Skip trailers up to the final blank line.
            read_header_lines(reader)?;
            return Some(body);
        }
        if size > MAX_BODY || body.len() as u64 + size > MAX_BODY {
            return None;
        }
        let before = body.len();
        reader.take(size).read_to_end(&mut body).ok()?;
        if (body.len() - before) as u64 != size {
            return None;
        }
        // Each chunk's data is followed by CRLF.
        if !read_line(reader)?.is_empty() {
            return None;
        }
    }
}

/// Runs `git http-backend` for the request and returns its raw CGI output.
fn run_backend(request: &Request, body: &[u8], config: &Config) -> Option<Vec<u8>> {
    let mut command = Command::new("git");
    command
        .arg("http-backend")
        .current_dir(&config.root)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_NAMESPACE")
        .env_remove("GIT_CEILING_DIRECTORIES")
        .env_remove("GIT_CONFIG_PARAMETERS")
        .env_remove("GIT_CONFIG_COUNT")
        .env_remove("HTTP_CONTENT_ENCODING")
        .env_remove("GIT_PROTOCOL")
        .env("GIT_PROJECT_ROOT", &config.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &request.method)
        .env("PATH_INFO", &request.path)
        .env("QUERY_STRING", &request.query)
        .env("CONTENT_TYPE", request.header("content-type").unwrap_or(""))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", &config.username)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(encoding) = request.header("content-encoding") {
        command.env("HTTP_CONTENT_ENCODING", encoding);
    }
    if let Some(protocol) = request.header("git-protocol") {
        command.env("GIT_PROTOCOL", protocol);
    }

    let mut child = command.spawn().ok()?;
    let mut stdin = child.stdin.take()?;
    // Feed stdin from another thread so a large response cannot deadlock us.
    let input = body.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
        // Dropping stdin closes the pipe (EOF for the backend).
    });
    let output = child.wait_with_output().ok();
    let _ = feeder.join();
    Some(output?.stdout)
}

/// Splits CGI output into status line, headers to forward, and body.
fn parse_cgi_output(output: &[u8]) -> (String, Vec<String>, Vec<u8>) {
    let crlf = find(output, b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = find(output, b"\n\n").map(|i| (i, i + 2));
    let split = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    let Some((head_end, body_start)) = split else {
        return (
            "502 Bad Gateway".to_string(),
            vec!["Content-Type: text/plain".to_string()],
            b"malformed CGI output from git http-backend\n".to_vec(),
        );
    };

    let head = String::from_utf8_lossy(&output[..head_end]);
    let mut status = "200 OK".to_string();
    let mut headers = Vec::new();
    for line in head.split('\n') {
        let line = line.trim_end_matches('\r');
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            if !value.is_empty() {
                status = if value.contains(' ') {
                    value.to_string()
                } else {
                    format!("{value} Status")
                };
            }
        } else if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("connection")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            // Replaced by our own framing headers.
        } else if !name.is_empty() {
            headers.push(format!("{name}: {value}"));
        }
    }
    (status, headers, output[body_start..].to_vec())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
