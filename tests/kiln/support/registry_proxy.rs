//! Fault-injecting HTTP/1.1 reverse proxy for tests, placed in front of a Docker/OCI registry (CNCF
//! Distribution) listening on 127.0.0.1:<upstream_port>.
//!
//! Every client connection gets its own thread and may carry many sequential requests (keep-alive).
//! Each request is read in full (a chunked body is decoded) and forwarded to the registry on a fresh
//! connection with `Connection: close` and `Content-Length` framing; the response is read in full and
//! written back with `Content-Length` framing. `Location` headers pointing at the registry are
//! rewritten to point at the proxy, so clients keep going through it. Malformed input closes the
//! connection. Only the standard library is used.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long a socket may stay silent (or blocked on writing) before the connection is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest accepted request, status or header line, in bytes.
const MAX_LINE: u64 = 64 * 1024;
/// Most header lines accepted in one message (also bounds chunked trailers).
const MAX_HEADERS: usize = 256;
/// Largest accepted (decoded) body, in bytes.
const MAX_BODY: u64 = 16 * 1024 * 1024 * 1024;

/// Faults the proxy injects.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Registry without cross-repository mount support: for `POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repo>`
    /// strip the `mount` and `from` query parameters before forwarding, so the registry starts a normal upload
    /// session (answers 202 Accepted with a Location) instead of mounting (201).
    pub no_mount: bool,
    /// Answer `503 Service Unavailable` (empty body, `Content-Length: 0`) to the first N requests whose method is
    /// PUT or PATCH or POST and whose path contains "/blobs/uploads" — without forwarding them — then forward normally.
    pub fail_first_uploads: usize,
    /// A registry that takes images but no OCI 1.1 artifacts: answer `400 Bad Request` (without
    /// forwarding) to every manifest PUT whose body names an `artifactType` (artifact manifests
    /// and the referrers tag index).
    pub refuse_artifacts: bool,
}

/// A reverse proxy on 127.0.0.1:<free port> in front of the registry on 127.0.0.1:<upstream_port>.
/// Dropping it stops accepting connections.
pub struct RegistryProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// State shared by the accept thread and all connection handlers.
struct Shared {
    upstream_port: u16,
    proxy_port: u16,
    faults: Faults,
    stop: AtomicBool,
    mount_requests: AtomicUsize,
    failed_uploads: AtomicUsize,
}

impl RegistryProxy {
    /// Listen on 127.0.0.1:<free port> and forward to the registry on 127.0.0.1:`upstream_port`.
    pub fn start(upstream_port: u16, faults: Faults) -> RegistryProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("registry proxy: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("registry proxy: local_addr");
        let shared = Arc::new(Shared {
            upstream_port,
            proxy_port: addr.port(),
            faults,
            stop: AtomicBool::new(false),
            mount_requests: AtomicUsize::new(0),
            failed_uploads: AtomicUsize::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(format!("registry-proxy-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &accept_shared))
            .expect("registry proxy: spawn the accept thread");
        RegistryProxy {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// The port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// "127.0.0.1:<port>", for image references through the proxy.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// Number of POST requests that carried a `mount=` query parameter.
    pub fn mount_requests(&self) -> usize {
        self.shared.mount_requests.load(Ordering::SeqCst)
    }

    /// Number of `503 Service Unavailable` answers injected.
    pub fn failed_uploads(&self) -> usize {
        self.shared.failed_uploads.load(Ordering::SeqCst)
    }
}

impl Drop for RegistryProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept thread, which is blocked in accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        match stream {
            Ok(stream) => {
                let shared = Arc::clone(shared);
                // If the thread cannot be spawned, the stream is dropped (closed).
                let _ = thread::Builder::new()
                    .name("registry-proxy-conn".to_string())
                    .spawn(move || {
                        let _ = serve_client(stream, &shared);
                    });
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One HTTP request from a client, body decoded.
struct Request {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The client framed a body (Content-Length or Transfer-Encoding), even if empty.
    has_body: bool,
}

impl Request {
    /// Whether the client asked to close the connection after this request.
    fn wants_close(&self) -> bool {
        let tokens = connection_tokens(&self.headers);
        if tokens.iter().any(|t| t == "close") {
            return true;
        }
        self.version == "HTTP/1.0" && !tokens.iter().any(|t| t == "keep-alive")
    }
}

/// One HTTP response, body decoded.
struct Response {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The response has no body by definition (answer to HEAD, 1xx, 204, 304): keep the upstream's
    /// `Content-Length` (e.g. a blob's size on HEAD) instead of the body length.
    bodiless: bool,
}

impl Response {
    fn empty(status: u16, reason: &str) -> Response {
        Response {
            status,
            reason: reason.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            bodiless: false,
        }
    }
}

/// How a message body is delimited.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed mid-message",
    )
}

fn serve_client(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut reader, &mut writer)? else {
            return Ok(());
        };
        let mut close = request.wants_close();
        let response = match handle(request, shared) {
            Ok(response) => response,
            Err(_) => {
                // The registry could not be reached or answered garbage.
                close = true;
                Response::empty(502, "Bad Gateway")
            }
        };
        write_response(&mut writer, &response, close, shared)?;
        if close {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

/// Apply the faults, then forward the request to the registry.
fn handle(mut request: Request, shared: &Shared) -> io::Result<Response> {
    let (path, query) = match request.target.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (request.target.clone(), None),
    };
    let method = request.method.as_str();
    if method == "POST"
        && let Some(query) = &query
    {
        if query.split('&').any(|param| param.starts_with("mount=")) {
            shared.mount_requests.fetch_add(1, Ordering::SeqCst);
        }
        if shared.faults.no_mount {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|param| {
                    let key = param.split('=').next().unwrap_or("");
                    key != "mount" && key != "from"
                })
                .collect();
            request.target = if kept.is_empty() {
                path.clone()
            } else {
                format!("{path}?{}", kept.join("&"))
            };
        }
    }
    if matches!(method, "PUT" | "PATCH" | "POST") && path.contains("/blobs/uploads") {
        let limit = shared.faults.fail_first_uploads;
        let injected = shared
            .failed_uploads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        if injected {
            return Ok(Response::empty(503, "Service Unavailable"));
        }
    }
    if shared.faults.refuse_artifacts
        && method == "PUT"
        && path.contains("/manifests/")
        && request.body.windows(14).any(|w| w == b"\"artifactType\"")
    {
        return Ok(Response::empty(400, "Bad Request"));
    }
    forward(&request, shared)
}

fn forward(request: &Request, shared: &Shared) -> io::Result<Response> {
    let upstream_addr = SocketAddr::from(([127, 0, 0, 1], shared.upstream_port));
    let mut upstream = TcpStream::connect_timeout(&upstream_addr, IO_TIMEOUT)?;
    upstream.set_read_timeout(Some(IO_TIMEOUT))?;
    upstream.set_write_timeout(Some(IO_TIMEOUT))?;
    let _ = upstream.set_nodelay(true);

    let listed = connection_tokens(&request.headers);
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    head.push_str(&format!("Host: 127.0.0.1:{}\r\n", shared.upstream_port));
    for (name, value) in &request.headers {
        let lower = name.to_ascii_lowercase();
        if is_hop_by_hop(&lower, &listed)
            || matches!(lower.as_str(), "host" | "content-length" | "expect")
        {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if request.has_body || matches!(request.method.as_str(), "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", request.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&request.body)?;
    upstream.flush()?;

    let mut reader = BufReader::new(upstream);
    let (status, reason, headers) = loop {
        let line = read_line(&mut reader)?.ok_or_else(truncated)?;
        let (status, reason) = parse_status_line(&line)?;
        let headers = read_headers(&mut reader)?;
        // Skip interim responses (100 Continue, 103 Early Hints).
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        break (status, reason, headers);
    };
    let bodiless =
        request.method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if bodiless {
        Framing::None
    } else if let Some(chunked) = transfer_chunked(&headers) {
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match content_length(&headers)? {
            Some(length) => Framing::Length(length),
            None => Framing::UntilClose,
        }
    };
    let body = read_body(&mut reader, &framing)?;
    Ok(Response {
        status,
        reason,
        headers,
        body,
        bodiless,
    })
}

fn write_response(
    writer: &mut TcpStream,
    response: &Response,
    close: bool,
    shared: &Shared,
) -> io::Result<()> {
    let listed = connection_tokens(&response.headers);
    let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, response.reason);
    for (name, value) in &response.headers {
        let lower = name.to_ascii_lowercase();
        if is_hop_by_hop(&lower, &listed) || (lower == "content-length" && !response.bodiless) {
            continue;
        }
        if lower == "location" {
            let value = rewrite_location(value, shared.upstream_port, shared.proxy_port);
            head.push_str(&format!("{name}: {value}\r\n"));
        } else {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if !response.bodiless {
        head.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(&response.body)?;
    writer.flush()
}

/// Point an absolute `Location` at the registry to the proxy instead; leave anything else alone.
fn rewrite_location(value: &str, upstream_port: u16, proxy_port: u16) -> String {
    for host in ["127.0.0.1", "localhost"] {
        let prefix = format!("http://{host}:{upstream_port}");
        if let Some(rest) = value.strip_prefix(prefix.as_str())
            && (rest.is_empty() || rest.starts_with(['/', '?', '#']))
        {
            return format!("http://127.0.0.1:{proxy_port}{rest}");
        }
    }
    value.to_string()
}

/// Read one request; `Ok(None)` when the client closed the connection between requests.
fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> io::Result<Option<Request>> {
    // Tolerate empty lines before the request line (RFC 9112 section 2.2).
    let mut line = String::new();
    for _ in 0..8 {
        match read_line(reader)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => {
                line = l;
                break;
            }
        }
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("malformed request line"));
    };
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_alphabetic())
        || target.is_empty()
        || !version.starts_with("HTTP/1.")
    {
        return Err(invalid("malformed request line"));
    }
    let target = origin_form(target);
    let headers = read_headers(reader)?;

    let framing = match transfer_chunked(&headers) {
        Some(true) => Framing::Chunked,
        Some(false) => return Err(invalid("unsupported request transfer coding")),
        None => match content_length(&headers)? {
            Some(length) => Framing::Length(length),
            None => Framing::None,
        },
    };
    let has_body = !matches!(framing, Framing::None);
    let expects_continue = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("expect") && value.eq_ignore_ascii_case("100-continue")
    });
    if has_body && expects_continue && version != "HTTP/1.0" {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
    }
    let body = read_body(reader, &framing)?;
    Ok(Some(Request {
        method: method.to_string(),
        target,
        version: version.to_string(),
        headers,
        body,
        has_body,
    }))
}

/// Turn an absolute-form target (`http://host/path`) into origin form (`/path`).
fn origin_form(target: &str) -> String {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            return match rest.find(['/', '?']) {
                Some(i) if rest[i..].starts_with('/') => rest[i..].to_string(),
                Some(i) => format!("/{}", &rest[i..]),
                None => "/".to_string(),
            };
        }
    }
    target.to_string()
}

fn parse_status_line(line: &str) -> io::Result<(u16, String)> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    let reason = parts.next().unwrap_or("").trim();
    if !version.starts_with("HTTP/1.")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid("malformed status line"));
    }
    let status: u16 = code.parse().map_err(|_| invalid("malformed status code"))?;
    Ok((status, reason.to_string()))
}

/// Read one line ending in LF (CRLF or bare LF), without its ending; `Ok(None)` at end of stream
/// before any byte.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(invalid("line too long or truncated"));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| invalid("line is not UTF-8"))
}

/// Read header lines up to the empty line that ends them.
fn read_headers(reader: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(truncated)?;
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() >= MAX_HEADERS {
            return Err(invalid("too many header lines"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid("header line without a colon"));
        };
        if name.is_empty()
            || name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(invalid("malformed header name"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
}

/// `Some(true)` if the message's transfer coding ends in chunked, `Some(false)` for another
/// transfer coding, `None` without `Transfer-Encoding`.
fn transfer_chunked(headers: &[(String, String)]) -> Option<bool> {
    let codings: Vec<String> = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, value)| value.split(','))
        .map(|coding| coding.trim().to_ascii_lowercase())
        .filter(|coding| !coding.is_empty())
        .collect();
    codings.last().map(|last| last == "chunked")
}

/// The message's `Content-Length`, if any; conflicting or malformed values are an error.
fn content_length(headers: &[(String, String)]) -> io::Result<Option<u64>> {
    let mut length = None;
    for (_, value) in headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-length"))
    {
        for item in value.split(',') {
            let item = item.trim();
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("malformed Content-Length"));
            }
            let parsed: u64 = item
                .parse()
                .map_err(|_| invalid("Content-Length too large"))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(invalid("conflicting Content-Length values"));
            }
            length = Some(parsed);
        }
    }
    Ok(length)
}

fn read_body(reader: &mut impl BufRead, framing: &Framing) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match *framing {
        Framing::None => {}
        Framing::Length(length) => {
            if length > MAX_BODY {
                return Err(invalid("body too large"));
            }
            let got = reader.by_ref().take(length).read_to_end(&mut body)?;
            if got as u64 != length {
                return Err(truncated());
            }
        }
        Framing::Chunked => read_chunked(reader, &mut body)?,
        Framing::UntilClose => {
            reader.by_ref().take(MAX_BODY + 1).read_to_end(&mut body)?;
            if body.len() as u64 > MAX_BODY {
                return Err(invalid("body too large"));
            }
        }
    }
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead, body: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let line = read_line(reader)?.ok_or_else(truncated)?;
        let size = line.split(';').next().unwrap_or("").trim();
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("malformed chunk size"));
        }
        let size = u64::from_str_radix(size, 16).map_err(|_| invalid("chunk size too large"))?;
        if size == 0 {
            // Trailer section, discarded.
            for _ in 0..=MAX_HEADERS {
                match read_line(reader)? {
                    None => return Err(truncated()),
                    Some(trailer) if trailer.is_empty() => return Ok(()),
                    Some(_) => {}
                }
            }
            return Err(invalid("too many trailer lines"));
        }
        let total = (body.len() as u64)
            .checked_add(size)
            .ok_or_else(|| invalid("body too large"))?;
        if total > MAX_BODY {
            return Err(invalid("body too large"));
        }
        let got = reader.by_ref().take(size).read_to_end(body)?;
        if got as u64 != size {
            return Err(truncated());
        }
        match read_line(reader)? {
            Some(end) if end.is_empty() => {}
            _ => return Err(invalid("chunk not followed by CRLF")),
        }
    }
}

/// Lower-cased tokens of the message's `Connection` headers.
fn connection_tokens(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect()
}

/// Whether a (lower-cased) header name is hop-by-hop, including names listed in `Connection`.
fn is_hop_by_hop(lower: &str, listed: &[String]) -> bool {
    matches!(
        lower,
        "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade"
    ) || lower.starts_with("proxy-")
        || listed.iter().any(|token| token == lower)
}
