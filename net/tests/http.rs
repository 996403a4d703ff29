//! The guarded reqwest client against real HTTP servers on 127.0.0.1: each hostile test is named
//! after the attack it tries, and counts what the target server received (nothing, when refused).

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

mod common;

use std::time::{Duration, Instant};

use common::{Counter, HttpServer, Reply};
use kiln_net::{AllowList, Error, Policy, http};
use url::Url;

fn policy_opening(entries: &[String]) -> Policy {
    Policy::public().with_allowed(AllowList::from_entries(entries).unwrap())
}

fn client(policy: &Policy) -> reqwest::Client {
    http::guarded_client(policy, &http::Options::default()).unwrap()
}

/// Send a GET through a guarded client, checking the first URL as callers must.
async fn get(policy: &Policy, url: &str) -> Result<String, String> {
    get_with(policy, &http::Options::default(), url).await
}

async fn get_with(policy: &Policy, options: &http::Options, url: &str) -> Result<String, String> {
    let url = Url::parse(url).unwrap();
    http::check(policy, &url).map_err(|e| format!("check: {e}"))?;
    let client = http::guarded_client(policy, options).unwrap();
    match client.get(url).send().await {
        Ok(response) => Ok(response.text().await.unwrap()),
        Err(e) => Err(match http::guard_error(&e) {
            Some(guard) => format!("guard: {guard}"),
            None => format!("other: {e:?}"),
        }),
    }
}

/// The kiln-net error inside a failed request, as an owned copy.
async fn guard(policy: &Policy, url: &str) -> Error {
    let client = client(policy);
    let e = client
        .get(url)
        .send()
        .await
        .expect_err(&format!("{url} was fetched"));
    http::guard_error(&e)
        .and_then(Error::try_clone)
        .unwrap_or_else(|| panic!("{url}: no kiln-net error in {e:?}"))
}

#[tokio::test]
async fn an_allowed_redirect_is_followed() {
    // The control for the hostile tests below: the same setup with the target opened works.
    let target = HttpServer::start(|_| Reply::status(200, "secret data"));
    let target_url = target.url("/data");
    let front = HttpServer::start(move |_| Reply::redirect(&target_url));
    let policy = policy_opening(&[
        format!("127.0.0.1:{}", front.port),
        format!("127.0.0.1:{}", target.port),
    ]);
    assert_eq!(get(&policy, &front.url("/")).await.unwrap(), "secret data");
    assert_eq!(target.requests().len(), 1);
}

#[tokio::test]
async fn redirect_to_an_unopened_loopback_port_is_refused() {
    let target = Counter::start();
    let hop = format!("http://127.0.0.1:{}/admin", target.port);
    let front = HttpServer::start({
        let hop = hop.clone();
        move |_| Reply::redirect(&hop)
    });
    let policy = policy_opening(&[format!("127.0.0.1:{}", front.port)]);
    let err = guard(&policy, &front.url("/start")).await;
    assert!(matches!(err, Error::RedirectRefused { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&hop),
        "the message names the hop: {message}"
    );
    assert!(message.contains("loopback"), "{message}");
    assert_eq!(target.connections(), 0, "the refused hop was contacted");
    assert_eq!(front.requests().len(), 1);
}

#[tokio::test]
async fn redirect_to_a_name_that_resolves_to_loopback_is_refused() {
    let target = Counter::start();
    let front = HttpServer::start({
        let hop = format!("http://localhost:{}/admin", target.port);
        move |_| Reply::redirect(&hop)
    });
    // The front's IP literal is opened; that does not open the name localhost.
    let policy = policy_opening(&[format!("127.0.0.1:{}", front.port)]);
    let err = guard(&policy, &front.url("/")).await;
    assert!(
        matches!(err, Error::Refused { ref host, .. } if host == "localhost"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("localhost resolves to 127.0.0.1, a loopback address"),
        "{err}"
    );
    assert_eq!(target.connections(), 0);
}

#[tokio::test]
async fn redirect_to_an_ipv4_mapped_ipv6_literal_is_refused() {
    let target = Counter::start();
    let front = HttpServer::start({
        let hop = format!("http://[::ffff:127.0.0.1]:{}/", target.port);
        move |_| Reply::redirect(&hop)
    });
    let policy = policy_opening(&[format!("127.0.0.1:{}", front.port)]);
    let err = guard(&policy, &front.url("/")).await;
    assert!(matches!(err, Error::RedirectRefused { .. }), "{err}");
    assert!(err.to_string().contains("IPv4-mapped"), "{err}");
    assert_eq!(target.connections(), 0);
}

#[tokio::test]
async fn redirect_to_a_decimal_spelling_of_loopback_is_refused() {
    let target = Counter::start();
    let front = HttpServer::start({
        let hop = format!("http://2130706433:{}/", target.port);
        move |_| Reply::redirect(&hop)
    });
    let policy = policy_opening(&[format!("127.0.0.1:{}", front.port)]);
    let err = guard(&policy, &front.url("/")).await;
    assert!(matches!(err, Error::RedirectRefused { .. }), "{err}");
    assert_eq!(target.connections(), 0);
}

#[tokio::test]
async fn redirect_to_a_file_url_is_not_followed() {
    // reqwest (tower-http) does not turn a file: Location into a request: the 302 comes back as is.
    // The redirect policy refuses such a hop too (unit test `hops_are_judged` in src/http.rs).
    let front = HttpServer::start(|_| Reply::redirect("file:///etc/passwd"));
    let policy = policy_opening(&[format!("127.0.0.1:{}", front.port)]);
    let response = client(&policy).get(front.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.text().await.unwrap(), "");
}

#[tokio::test]
async fn redirect_to_a_listed_name_on_an_unlisted_port_is_refused() {
    // reqwest's resolver is not told the port: the redirect check enforces the allow-list's port.
    let target = Counter::start();
    let front = HttpServer::start({
        let hop = format!("http://localhost:{}/", target.port);
        move |_| Reply::redirect(&hop)
    });
    let policy = policy_opening(&[format!("localhost:{}", front.port)]);
    let err = guard(&policy, &format!("http://localhost:{}/", front.port)).await;
    assert!(
        matches!(err, Error::RedirectRefused { ref source, .. } if matches!(**source, Error::PortNotAllowed { .. })),
        "{err}"
    );
    assert_eq!(target.connections(), 0);
    assert_eq!(front.requests().len(), 1);
}

#[tokio::test]
async fn a_redirect_loop_stops_at_the_limit() {
    let front = HttpServer::start(|request| Reply::redirect(&format!("{}x", request.path)));
    let policy = policy_opening(&[format!("127.0.0.1:{}", front.port)]);
    let err = guard(&policy, &front.url("/")).await;
    assert!(
        matches!(err, Error::TooManyRedirects { limit: 5, .. }),
        "{err}"
    );
    // The first request and five redirects.
    assert_eq!(front.requests().len(), 6);
}

#[tokio::test]
async fn same_host_only_refuses_a_redirect_to_another_host() {
    let target = HttpServer::start(|_| Reply::status(200, "elsewhere"));
    let front = HttpServer::start({
        let hop = format!("http://localhost:{}/", target.port);
        move |_| Reply::redirect(&hop)
    });
    let policy = policy_opening(&[
        format!("127.0.0.1:{}", front.port),
        format!("localhost:{}", target.port),
    ]);
    let options = http::Options {
        same_host_only: true,
        ..http::Options::default()
    };
    let err = get_with(&policy, &options, &front.url("/"))
        .await
        .unwrap_err();
    assert!(err.contains("same host"), "{err}");
    assert!(target.requests().is_empty());
    // Without the option the hop is followed (both are opened).
    assert_eq!(get(&policy, &front.url("/")).await.unwrap(), "elsewhere");
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused() {
    let server = HttpServer::start(|_| Reply::status(200, "internal"));
    let url = format!("http://localhost:{}/", server.port);
    let err = guard(&Policy::public(), &url).await;
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    assert!(server.requests().is_empty(), "the server was reached");
    // Opened by name (on this port), the same request goes through.
    let policy = policy_opening(&[format!("localhost:{}", server.port)]);
    assert_eq!(get(&policy, &url).await.unwrap(), "internal");
    // Nothing is refused for the operator's command line.
    assert_eq!(get(&Policy::open(), &url).await.unwrap(), "internal");
}

#[tokio::test]
async fn an_ip_literal_first_url_is_the_callers_to_check() {
    // hyper connects to an IP literal without asking the resolver: `http::check` is what refuses it.
    let server = HttpServer::start(|_| Reply::status(200, "internal"));
    let err = get(&Policy::public(), &server.url("/")).await.unwrap_err();
    assert!(err.starts_with("check: "), "{err}");
    assert!(err.contains("loopback"), "{err}");
    assert!(server.requests().is_empty());
    let mapped = Url::parse(&format!("http://[::ffff:127.0.0.1]:{}/", server.port)).unwrap();
    assert!(matches!(
        http::check(&Policy::public(), &mapped),
        Err(Error::Refused { .. })
    ));
}

#[tokio::test]
async fn a_server_that_stops_sending_hits_the_read_timeout() {
    let server = HttpServer::start(|_| Reply::Trickle {
        content_type: "text/plain".into(),
        body: b"x".to_vec(),
        interval: Duration::from_secs(30),
    });
    let policy = policy_opening(&[format!("127.0.0.1:{}", server.port)]);
    let options = http::Options {
        read_timeout: Some(Duration::from_millis(500)),
        ..http::Options::default()
    };
    let client = http::guarded_client(&policy, &options).unwrap();
    let started = Instant::now();
    let response = client.get(server.url("/")).send().await.unwrap();
    let err = response.text().await.unwrap_err();
    assert!(
        err.is_timeout() || format!("{err:?}").contains("TimedOut"),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_client_builder_with_added_settings_keeps_the_guard() {
    // The conda crate adds its own settings to the builder: the resolver stays the policy's.
    let server = HttpServer::start(|_| Reply::status(200, "internal"));
    let client = http::client_builder(&Policy::public(), &http::Options::default())
        .default_headers(reqwest::header::HeaderMap::new())
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let e = client
        .get(format!("http://localhost:{}/", server.port))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(http::guard_error(&e), Some(Error::Refused { .. })),
        "{e:?}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn policies_and_scopes_cross_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Policy>();
    shareable::<kiln_net::git::Scope>();
    shareable::<Error>();
}
