//! Benchmark of what hub authentication adds to a request (issue 14): `GET <base>api/me`, straight
//! to kiln (not through the hub's proxy, whose cost is not kiln's), on one kept-alive connection.
//! - baseline, in the same run: the same request to a kiln without a hub (anonymous);
//! - a hub token kiln has already checked (its answer cached for a minute);
//! - the session cookie of a hub login (signed id, sessions in memory);
//! - a hub token kiln has not seen: the first request asks the hub (`/hub/api/user`).
//!
//! Run: `cargo bench --bench auth` (needs JupyterHub: `bash examples/hub/install.sh`, see README).

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

// The benchmarks use part of the tests' support code.
#[allow(dead_code)]
#[path = "../tests/kiln/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::hub_login::Browser;
use support::jupyterhub::JupyterHubServer;
use support::service::Service;
use support::*;

const BASE: &str = "/services/kiln/";
/// Requests per case and round; the cases take turns for `ROUNDS` rounds.
const REQUESTS: usize = 500;
const ROUNDS: usize = 4;
/// Fresh tokens, each asked once (each costs kiln a call to the hub).
const FRESH_TOKENS: usize = 50;

/// One HTTP/1.1 connection kept alive.
struct Connection {
    reader: BufReader<TcpStream>,
    port: u16,
}

impl Connection {
    fn open(port: u16) -> Connection {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Connection {
            reader: BufReader::new(stream),
            port,
        }
    }

    /// `GET path` with `headers` (each ending in `\r\n`): the status and the body.
    fn get(&mut self, path: &str, headers: &str) -> (u16, String) {
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}\r\n",
            self.port
        )
        .unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        (status, String::from_utf8(body).unwrap())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50 and p99 in ms.
fn summary(name: &str, mut values: Vec<f64>, baseline: Option<(f64, f64)>) -> (f64, f64) {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (p50, p99) = (percentile(&values, 0.5), percentile(&values, 0.99));
    let added = baseline
        .map(|(b50, b99)| {
            format!(
                "   added p50 {:+.3} ms   p99 {:+.3} ms",
                p50 - b50,
                p99 - b99
            )
        })
        .unwrap_or_default();
    println!(
        "{name:<40} n {:>5}   p50 {p50:>7.3} ms   p99 {p99:>7.3} ms{added}",
        values.len()
    );
    (p50, p99)
}

/// Time `REQUESTS` requests on `connection`, each checked to be answered as `user`.
fn timed(connection: &mut Connection, headers: &str, user: Option<&str>, into: &mut Vec<f64>) {
    for _ in 0..REQUESTS {
        let started = Instant::now();
        let (status, body) = connection.get(&format!("{BASE}api/me"), headers);
        into.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200, "{body}");
        let me: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(me["user"].as_str(), user, "{body}");
    }
}

fn main() {
    let port = free_port();
    let hub = JupyterHubServer::start_version(
        "6.1.1",
        &[("KILN_SERVICE_URL", &format!("http://127.0.0.1:{port}"))],
    );
    let dir = tempfile::tempdir().unwrap();
    let mut settings: Vec<(&str, String)> = hub.kiln_env();
    settings.extend([
        ("KILN_BASE_URL", BASE.to_string()),
        ("KILN_HUB_AUTH", "1".to_string()),
        ("KILN_TRUSTED_PROXY_HOPS", "1".to_string()),
    ]);
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _with_hub = Service::start_on(
        port,
        &dir.path().join("hub.db"),
        &settings,
        &dir.path().join("hub.log"),
    );
    let without_hub = Service::start_with(
        &dir.path().join("plain.db"),
        &[("KILN_BASE_URL", BASE), ("KILN_ALLOW_ANONYMOUS", "1")],
    );
    // The hub's proxy routes to kiln once the hub has added its route; the login goes through it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while (support::service::Http { port: hub.port })
        .get(&format!("{BASE}health"), None)
        .0
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "the hub's proxy does not reach kiln"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let _ = hub.api("POST", "users/alice", None);
    let issue = |note: &str| {
        let (status, issued) = hub.api(
            "POST",
            "users/alice/tokens",
            Some(&format!("{{\"note\": \"{note}\"}}")),
        );
        assert_eq!(status, 201, "{issued}");
        issued["token"].as_str().unwrap().to_string()
    };
    let token = format!("Authorization: token {}\r\n", issue("bench"));
    let mut browser = Browser::new(hub.port);
    browser.log_in_to_hub("alice");
    let (page, _) = browser.follow(BASE, "");
    assert_eq!(page.status, 200, "{}", page.body);
    let cookie = browser.cookie_header();
    assert!(cookie.contains("kiln-session"), "{cookie}");

    let mut plain = Connection::open(without_hub.http.port);
    let mut tokened = Connection::open(port);
    let mut cookied = Connection::open(port);
    // Warm-up: connections, the token's cache entry.
    timed(&mut plain, "", None, &mut Vec::new());
    timed(&mut tokened, &token, Some("alice"), &mut Vec::new());
    timed(&mut cookied, &cookie, Some("alice"), &mut Vec::new());

    let (mut baseline, mut cached, mut session) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        timed(&mut plain, "", None, &mut baseline);
        timed(&mut tokened, &token, Some("alice"), &mut cached);
        timed(&mut cookied, &cookie, Some("alice"), &mut session);
    }
    let mut fresh = Vec::new();
    for i in 0..FRESH_TOKENS {
        let header = format!("Authorization: token {}\r\n", issue(&format!("fresh-{i}")));
        let started = Instant::now();
        let (status, body) = tokened.get(&format!("{BASE}api/me"), &header);
        fresh.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200, "{body}");
    }

    println!(
        "GET {BASE}api/me straight to kiln, one kept-alive connection per case, {} requests per case",
        REQUESTS * ROUNDS
    );
    let base = summary("baseline: no hub, anonymous", baseline, None);
    summary("hub token, cached", cached, Some(base));
    summary("hub login cookie", session, Some(base));
    summary("hub token, first use (asks the hub)", fresh, Some(base));
}
