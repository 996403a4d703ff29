//! The web page in a real browser (Debian's headless Chromium, driven through chromedriver): paste an
//! example repository's URL, watch the phase and the log, reach `ready`; a screenshot is kept in
//! test-artifacts/.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use base64::Engine as _;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One WebDriver call (HTTP/1.1 with a JSON body).
fn webdriver(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("chromedriver answers");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read the head, then exactly Content-Length bytes (chromedriver may keep the connection open).
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut buf).expect("chromedriver answers in time");
        assert!(n > 0, "chromedriver closed the connection");
        bytes.extend_from_slice(&buf[..n]);
        if let Some(i) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while bytes.len() < head_end + length {
        let n = stream.read(&mut buf).expect("chromedriver answers in time");
        assert!(n > 0, "chromedriver closed the connection early");
        bytes.extend_from_slice(&buf[..n]);
    }
    let json = String::from_utf8_lossy(&bytes[head_end..head_end + length]).to_string();
    serde_json::from_str(&json).unwrap_or_else(|_| panic!("not JSON from chromedriver: {json}"))
}

struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|_| {
                panic!(
                    "chromedriver is missing (apt-get install chromium chromium-driver): {SETUP}"
                )
            });
        wait_for_port(port);
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--window-size=1100,900",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let created = webdriver(
            port,
            "POST",
            "/session",
            Some(
                json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}}),
            ),
        );
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_string();
        Browser {
            driver,
            port,
            session,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        webdriver(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
    }

    fn element(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found["value"][ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css} not found: {found}"))
            .to_string()
    }

    fn text(&self, css: &str) -> String {
        let id = self.element(css);
        self.call("GET", &format!("/element/{id}/text"), None)["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = webdriver(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn paste_a_repository_watch_the_log_and_reach_ready() {
    require_engine();
    let server = GitServer::start();
    server.example("python-requirements", "page");
    let port = free_port();
    let state = tempfile::tempdir().unwrap();
    let mut service = kiln()
        .arg("serve")
        .env("KILN_STATE", state.path().join("state.db"))
        .env("KILN_LISTEN", format!("127.0.0.1:{port}"))
        .env("KILN_ALLOWED_HOSTS", "127.0.0.1:*")
        .env("KILN_DEVELOPMENT", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    let browser = Browser::start();
    browser.call(
        "POST",
        "/url",
        Some(json!({"url": format!("http://127.0.0.1:{port}/")})),
    );
    let repo = browser.element("#repo");
    browser.call(
        "POST",
        &format!("/element/{repo}/value"),
        Some(json!({"text": server.url("page")})),
    );
    let launch = browser.element("#launch");
    browser.call("POST", &format!("/element/{launch}/click"), Some(json!({})));

    let deadline = Instant::now() + Duration::from_secs(300);
    let mut log_sizes = Vec::new();
    loop {
        let phase = browser.text("#phase");
        log_sizes.push(browser.text("#log").len());
        if phase == "ready" || phase == "failed" {
            assert_eq!(phase, "ready", "log: {}", browser.text("#log"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ready in 300 s; phase {phase}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(log_sizes.last().unwrap() > &0, "the log shows the build");
    assert!(browser.text("#log").contains("Resolved to commit"));
    let link = browser.element("#session-link");
    let href = browser.call("GET", &format!("/element/{link}/property/href"), None)["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(href.contains("/lab?token="), "{href}");
    let badge = browser.element("#badge");
    let badge = browser.call("GET", &format!("/element/{badge}/property/value"), None)["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        badge.starts_with("[![Launch with kiln]") && badge.contains("/v2/git/"),
        "{badge}"
    );

    let shot = browser.call("GET", "/screenshot", None);
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["value"].as_str().unwrap())
        .unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("web-page-ready.png"), png).unwrap();

    drop(browser);
    // SIGTERM: the service removes the sessions it started.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(service.id().to_string())
        .status();
    let _ = service.wait();
    // Remove the session this test started: the container serving the session's port.
    let port_in_href: u16 = href["http://127.0.0.1:".len()..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let all = docker(&["ps", "-q", "--filter", "name=kiln-run-"]);
    for id in String::from_utf8_lossy(&all.stdout).split_whitespace() {
        let cmd = docker(&["inspect", "--format", "{{json .Config.Cmd}}", id]);
        if String::from_utf8_lossy(&cmd.stdout).contains(&format!("--port={port_in_href}")) {
            docker(&["rm", "-f", id]);
        }
    }
}
