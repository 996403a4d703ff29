//! The web page in a real browser (Debian's headless Chromium, driven through chromedriver): paste an
//! example repository's URL, watch the phase and the log, reach `ready`; a screenshot is kept in
//! test-artifacts/.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::browser::Browser;
use crate::support::*;
use base64::Engine as _;
use serde_json::json;

/// `kiln serve` with `env` on a free port, and a browser that pastes `what` into its page and
/// presses Launch.
fn launch_from_the_page(
    state: &tempfile::TempDir,
    env: &[(&str, String)],
    what: &str,
) -> (std::process::Child, Browser) {
    let port = free_port();
    let service = kiln()
        .arg("serve")
        .env("KILN_STATE", state.path().join("state.db"))
        .env("KILN_LISTEN", format!("127.0.0.1:{port}"))
        .env("KILN_DEVELOPMENT", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
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
        Some(json!({"text": what})),
    );
    let launch = browser.element("#launch");
    browser.call("POST", &format!("/element/{launch}/click"), Some(json!({})));
    (service, browser)
}

/// Wait (up to 300 s) for the page's phase to be `ready`, failing on `failed` with the page's log;
/// the log's length at each look.
fn wait_for_ready(browser: &Browser, what: &str) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut log_sizes = Vec::new();
    loop {
        let phase = browser.text("#phase");
        log_sizes.push(browser.text("#log").len());
        if phase == "ready" || phase == "failed" {
            assert_eq!(phase, "ready", "{what}: log: {}", browser.text("#log"));
            return log_sizes;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no ready in 300 s; phase {phase}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn paste_a_repository_watch_the_log_and_reach_ready() {
    require_engine();
    let server = GitServer::start();
    server.example("python-requirements", "page");
    let state = tempfile::tempdir().unwrap();
    let (mut service, browser) = launch_from_the_page(
        &state,
        &[("KILN_ALLOWED_HOSTS", "127.0.0.1:*".into())],
        &server.url("page"),
    );

    let log_sizes = wait_for_ready(&browser, "the repository");
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

    // The packages of the image, from its record: the example's pin is listed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while browser.text("#packages-summary").is_empty() {
        assert!(Instant::now() < deadline, "no package list on the page");
        std::thread::sleep(Duration::from_millis(200));
    }
    let summary = browser.text("#packages-summary");
    assert!(
        summary.contains("python") && summary.contains("deb"),
        "{summary}"
    );
    let table = browser.text("#packages-table");
    assert!(table.contains("six") && table.contains("1.16.0"), "{table}");

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

/// A DOI pasted into the page (as a paper cites it) launches the archived record; so do a
/// SWHID and a CKAN dataset (`ckan:<URL>`).
#[test]
fn paste_a_doi_a_swhid_or_a_ckan_dataset_and_reach_ready() {
    require_engine();
    let dir = "3333333333333333333333333333333333333333";
    let records = crate::support::records::RecordServer::start(&format!(
        r#"{{"dois": {{"10.5281/zenodo.323": "http://127.0.0.1:PORT/records/323"}},
            "records": {{"323": {{"files": [{{"key": "paper-code.zip", "path": "files/code.zip"}}]}}}},
            "swh": {{"revisions": {{}}, "dirs": {{"{dir}": "files/code.tar.gz"}}}},
            "ckan": {{"paper": {{"modified": "2024-01-01T00:00:00", "resources": [
              {{"name": "requirements.txt", "path": "files/requirements.txt"}},
              {{"name": "verify", "path": "files/verify"}}]}}}}}}"#
    ));
    let names = ["requirements.txt", "verify"];
    let texts: Vec<String> = names
        .iter()
        .map(|name| {
            std::fs::read_to_string(examples().join("python-requirements").join(name)).unwrap()
        })
        .collect();
    let tree: Vec<(String, String)> = names
        .iter()
        .zip(&texts)
        .map(|(name, text)| (format!("paper-code/{name}"), text.clone()))
        .collect();
    let tree: Vec<(&str, &str)> = tree.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    records.zip("code.zip", &tree);
    records.tar_gz("code.tar.gz", &tree);
    for (name, text) in names.iter().zip(&texts) {
        records.file(name, text.as_bytes());
    }
    let ckan = format!("ckan:http://127.0.0.1:{}/dataset/paper", records.port);
    let swhid = format!("swh:1:dir:{dir}");
    for (what, log_says, badge_says, image) in [
        (
            "https://doi.org/10.5281/zenodo.323",
            "Resolved to record 323",
            "/v2/doi/10.5281/zenodo.323".to_string(),
            "kiln/zenodo-323:323".to_string(),
        ),
        (
            swhid.as_str(),
            "Asking Software Heritage's vault",
            format!("/v2/swhid/swh%3A1%3Adir%3A{dir}"),
            format!("kiln/swh-{dir}:{dir}"),
        ),
        (
            ckan.as_str(),
            "Fetching the CKAN dataset paper",
            "/v2/ckan/http%3A%2F%2F127.0.0.1".to_string(),
            "kiln/ckan-paper:paper.v1704067200".to_string(),
        ),
    ] {
        let state = tempfile::tempdir().unwrap();
        let mut env = records.env();
        env.push(("KILN_ALLOWED_HOSTS", format!("127.0.0.1:{}", records.port)));
        let (mut service, browser) = launch_from_the_page(&state, &env, what);
        wait_for_ready(&browser, what);
        let log = browser.text("#log");
        assert!(log.contains(log_says), "{what}: {log}");
        let badge = browser.element("#badge");
        let badge = browser.call("GET", &format!("/element/{badge}/property/value"), None)["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(badge.contains(&badge_says), "{what}: {badge}");
        drop(browser);
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(service.id().to_string())
            .status();
        let _ = service.wait();
        let ids = docker(&["ps", "-aq", "--filter", &format!("ancestor={image}")]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            docker(&["rm", "-f", id]);
        }
        remove_image(&image);
    }
}
