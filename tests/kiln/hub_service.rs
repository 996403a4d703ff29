//! kiln inside a community's hub: a real JupyterHub (6.x and 5.x, DockerSpawner) started from
//! `examples/hub/jupyterhub_config.py` with `KILN_SERVICE_URL`, which registers kiln as its service,
//! proxied at `/services/kiln/`; kiln runs with `KILN_BASE_URL=/services/kiln/` and hub login.
//! Everything goes through the hub's proxy, as people and jupyterhub-fancy-profiles reach it: the
//! OAuth login (also in headless Chromium, from kiln's page to JupyterLab in the user's server),
//! launches into the user's own server, BinderHub's JavaScript client with a user's token, per-user
//! limits, private repositories with a user's own git token, and every refusal (each starts
//! nothing).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::browser::Browser as Chromium;
use crate::support::git_http::GitHttpServer;
use crate::support::hub_login::{Browser, local_path};
use crate::support::jupyterhub::JupyterHubServer;
use crate::support::redirector::Redirector;
use crate::support::service::{Http, Service, escaped};
use crate::support::*;

const BASE: &str = "/services/kiln/";

struct HubWithKiln {
    hub: JupyterHubServer,
    /// The path kiln is served under (`BASE` unless the settings name another).
    base: String,
    kiln: Service,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl HubWithKiln {
    /// A hub of `version` with kiln as its service, kiln with `extra` settings and the hub with
    /// `hub_env`.
    fn start(version: &str, extra: &[(&str, &str)], hub_env: &[(&str, &str)]) -> HubWithKiln {
        let port = free_port();
        let service_url = format!("http://127.0.0.1:{port}");
        let mut env = vec![("KILN_SERVICE_URL", service_url.as_str())];
        env.extend_from_slice(hub_env);
        let hub = JupyterHubServer::start_version(version, &env);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("kiln.log");
        let mut settings: Vec<(&str, String)> = hub.kiln_env();
        settings.extend([
            ("KILN_BASE_URL", BASE.to_string()),
            ("KILN_HUB_AUTH", "1".to_string()),
            ("KILN_TRUSTED_PROXY_HOPS", "1".to_string()),
            // Images get the hub's own major version of jupyterhub-singleuser.
            ("KILN_JUPYTERHUB_VERSION", version.to_string()),
        ]);
        settings.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let kiln = Service::start_on(port, &dir.path().join("state.db"), &settings, &log);
        let base = extra
            .iter()
            .find(|(k, _)| *k == "KILN_BASE_URL")
            .map_or(BASE, |(_, v)| *v)
            .to_string();
        let with = HubWithKiln {
            hub,
            base,
            kiln,
            log,
            _dir: dir,
        };
        // The hub's proxy routes /services/kiln/ once the hub has added kiln's route.
        let deadline = Instant::now() + Duration::from_secs(30);
        while with.proxy().get(&format!("{}health", with.base), None).0 != 200 {
            assert!(
                Instant::now() < deadline,
                "the hub's proxy does not reach kiln at {}; kiln's log:\n{}\nthe hub's log:\n{}",
                with.base,
                with.kiln_log(),
                std::fs::read_to_string(&with.hub.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        with
    }

    /// Requests through the hub's proxy.
    fn proxy(&self) -> Http {
        Http {
            port: self.hub.port,
        }
    }

    fn kiln_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Builds kiln has started (from its health report, under the base path).
    fn builds_started(&self) -> u64 {
        let (_, response) = self.kiln.get(&format!("{}health", self.base), None);
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
        let body = body.lines().find(|l| l.starts_with('{')).unwrap_or(body);
        serde_json::from_str::<Value>(body).unwrap()["builds_started"]
            .as_u64()
            .unwrap()
    }

    /// A browser logged in to the hub as `user` and to kiln (through the OAuth login).
    fn logged_in(&self, user: &str) -> Browser {
        let mut browser = Browser::new(self.hub.port);
        browser.log_in_to_hub(user);
        let (page, at) = browser.follow(BASE, "");
        assert_eq!(
            page.status, 200,
            "kiln's page after the login: {}",
            page.body
        );
        assert_eq!(at, BASE, "the login returns to the page it started from");
        assert!(
            browser.cookies.contains_key("kiln-session"),
            "{:?}",
            browser.cookies
        );
        browser
    }

    /// A token the hub issues for `user` with `request` (scopes, expiry), and its id.
    fn token(&self, user: &str, request: Value) -> (String, String) {
        let _ = self.hub.api("POST", &format!("users/{user}"), None);
        let (status, issued) = self.hub.api(
            "POST",
            &format!("users/{user}/tokens"),
            Some(&request.to_string()),
        );
        assert_eq!(status, 201, "{issued}");
        (
            issued["token"].as_str().unwrap().to_string(),
            issued["id"].as_str().unwrap().to_string(),
        )
    }
}

/// `/build/git/<repository>/HEAD` under kiln's base path.
fn build_path(git: &GitServer, name: &str) -> String {
    format!("{BASE}build/git/{}/HEAD", escaped(&git.url(name)))
}

fn phases(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["phase"].as_str()).collect()
}

/// `GET <base>api/me` with `cookie` (a `Cookie:` header line): who kiln takes the caller for.
fn me(proxy: &Http, cookie: &str) -> Value {
    let (status, answer) = proxy.request("GET", &format!("{BASE}api/me"), cookie, "");
    assert_eq!(status, 200, "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body.lines().find(|l| l.starts_with('{')).unwrap_or(body)).unwrap()
}

#[test]
fn a_hub_user_logs_in_through_the_hub_and_launches_into_their_own_server() {
    require_engine();
    let git = GitServer::start();
    git.example("python-default", "svc-login");
    let with = HubWithKiln::start("6.1.1", &[], &[]);
    let alice = with.logged_in("alice");
    let me = me(&with.proxy(), &alice.cookie_header());
    assert_eq!(me["user"], "alice", "{me}");
    assert!(me["csrf"].as_str().is_some_and(|c| c.len() >= 32), "{me}");
    // The page and its assets are served under the base path.
    let (status, page) = with.proxy().get(BASE, None);
    assert_eq!(status, 303, "anonymous visitors are sent to log in: {page}");
    let (status, _) = with.proxy().get(&format!("{BASE}static/kiln.js"), None);
    assert_eq!(status, 200);

    let (events, raw) = with
        .proxy()
        .events_with(&build_path(&git, "svc-login"), &alice.cookie_header());
    assert_eq!(
        phases(&events).last(),
        Some(&"ready"),
        "{raw}\nkiln's log:\n{}",
        with.kiln_log()
    );
    let ready = events.last().unwrap();
    let url = ready["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}user/alice/svc-login-", with.hub.url())),
        "a logged-in user's launch is their own named server: {url}"
    );
    assert_eq!(
        ready["binder_launch_host"],
        format!("http://127.0.0.1:{}{BASE}", with.hub.port),
        "binder_launch_host is kiln's public address with its base path"
    );
    assert_eq!(with.hub.users(), ["alice"], "no temporary user");
    let server = url.trim_end_matches('/').rsplit('/').next().unwrap();
    let (_, model) = with.hub.api("GET", "users/alice", None);
    assert_eq!(
        model["servers"][server]["user_options"]["image"], ready["image"],
        "{model}"
    );
    remove_image(ready["image"].as_str().unwrap());
}

#[test]
fn refused_hub_logins_tokens_and_cookies_start_nothing() {
    require_engine();
    let mut with = HubWithKiln::start("6.1.1", &[], &[]);
    let nowhere = format!(
        "{BASE}build/git/{}/HEAD",
        escaped("http://127.0.0.1:1/nothing.git")
    );
    let sse = "Accept: text/event-stream\r\n";
    let proxy = with.proxy();

    // Anonymous callers: the page sends them to log in; the API says how.
    let (status, answer) = proxy.get(&format!("{BASE}v2/gh/a/b/HEAD?urlpath=lab"), None);
    assert_eq!(status, 303, "{answer}");
    assert!(
        answer.contains(
            "oauth_login?next=%2Fservices%2Fkiln%2Fv2%2Fgh%2Fa%2Fb%2FHEAD%3Furlpath%3Dlab"
        ),
        "{answer}"
    );
    let (status, answer) = proxy.request("GET", &nowhere, sse, "");
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("log in through the hub first"), "{answer}");

    // A forged session cookie is no session.
    let forged = proxy.request(
        "GET",
        &nowhere,
        &format!("{sse}Cookie: kiln-session=0123abcd.{}\r\n", "ab".repeat(32)),
        "",
    );
    assert_eq!(forged.0, 401, "{}", forged.1);

    // A cookie copied before a logout no longer works.
    let mut alice = with.logged_in("alice");
    let copied = alice.cookie_header();
    let out = alice.request("GET", &format!("{BASE}logout"), "", "");
    assert_eq!(out.status, 302);
    assert!(!alice.cookies.contains_key("kiln-session"));
    let replayed = proxy.request("GET", &nowhere, &format!("{sse}{copied}"), "");
    assert_eq!(replayed.0, 401, "a replayed cookie: {}", replayed.1);

    // CSRF: a state-changing call with the cookie but without the page's token; a read from
    // another site.
    let alice = with.logged_in("alice");
    let cookie = alice.cookie_header();
    let body = json!({"provider": "git", "spec": nowhere.trim_start_matches(&format!("{BASE}build/git/"))}).to_string();
    let json_type = "Content-Type: application/json\r\n";
    let (status, answer) = proxy.request(
        "POST",
        &format!("{BASE}api/builds"),
        &format!("{cookie}{json_type}"),
        &body,
    );
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("CSRF"), "{answer}");
    let (status, answer) = proxy.request(
        "GET",
        &nowhere,
        &format!("{sse}{cookie}Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: cors\r\n"),
        "",
    );
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("other sites"), "{answer}");
    assert_eq!(with.builds_started(), 0, "no refusal started a build");
    // The same call with the page's token is accepted (the control).
    let me = me(&proxy, &cookie);
    let csrf = me["csrf"].as_str().unwrap();
    let (status, answer) = proxy.request(
        "POST",
        &format!("{BASE}api/builds"),
        &format!("{cookie}{json_type}X-Kiln-CSRF: {csrf}\r\n"),
        &body,
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(with.builds_started(), 1);

    // Hub tokens: without kiln's scope, expired, revoked, a service's.
    let (narrow, _) = with.token("bob", json!({"scopes": ["read:users:name!user=bob"]}));
    let (status, answer) = proxy.request(
        "GET",
        &nowhere,
        &format!("{sse}Authorization: Bearer {narrow}\r\n"),
        "",
    );
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer.contains("lacks the scope access:services!service=kiln"),
        "{answer}"
    );
    let (expiring, _) = with.token("bob", json!({"expires_in": 1}));
    std::thread::sleep(Duration::from_secs(2));
    let (revoked, id) = with.token("bob", json!({"note": "revoked"}));
    assert_eq!(
        with.hub
            .api("DELETE", &format!("users/bob/tokens/{id}"), None)
            .0,
        204
    );
    for (what, token) in [("expired", expiring), ("revoked", revoked)] {
        let (status, answer) = proxy.request(
            "GET",
            &nowhere,
            &format!("{sse}Authorization: token {token}\r\n"),
            "",
        );
        assert_eq!(status, 401, "an {what} token: {answer}");
        assert!(answer.contains("did not accept your token"), "{answer}");
    }
    let service_token = with.hub.token.clone();
    let (status, answer) = proxy.request(
        "GET",
        &nowhere,
        &format!("{sse}Authorization: token {service_token}\r\n"),
        "",
    );
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("not a hub user's"), "{answer}");

    // A login callback whose state is not the one this browser started; one with no login cookie.
    let mut carol = Browser::new(with.hub.port);
    carol.log_in_to_hub("carol");
    let callback = oauth_callback_path(&mut carol);
    let wrong = callback.replace("state=", "state=x");
    let answer = carol.request("GET", &wrong, "", "");
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer.body.contains("state does not match"),
        "{}",
        answer.body
    );
    let mut stranger = Browser::new(with.hub.port);
    let answer = stranger.request("GET", &callback, "", "");
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer.body.contains("did not start a login"),
        "{}",
        answer.body
    );

    // The hub is down when the login comes back: a clear page, no session.
    let callback = oauth_callback_path(&mut carol);
    with.hub.stop();
    let direct = Http {
        port: with.kiln.port,
    };
    let (status, answer) = direct.request("GET", &callback, &carol.cookie_header(), "");
    assert_eq!(status, 502, "{answer}");
    assert!(
        answer.contains("could not be completed with the hub"),
        "{answer}"
    );
    assert!(!answer.contains("kiln-session="), "{answer}");
    assert_eq!(with.builds_started(), 1, "only the control built");
}

/// Start a login at kiln and let the hub (where the browser is logged in) answer it: the path of
/// kiln's callback with the hub's code and state, not yet visited.
fn oauth_callback_path(browser: &mut Browser) -> String {
    let start = browser.request("GET", &format!("{BASE}oauth_login?next={BASE}"), "", "");
    assert_eq!(start.status, 302, "{}", start.body);
    let mut path = local_path(start.header("location").unwrap(), BASE);
    for _ in 0..5 {
        let answer = browser.request("GET", &path, "", "");
        let to = answer.header("location").unwrap_or_else(|| {
            panic!(
                "the hub's authorize answered {}: {}",
                answer.status, answer.body
            )
        });
        path = local_path(to, &path);
        if path.starts_with(&format!("{BASE}oauth_callback")) {
            return path;
        }
    }
    panic!("the hub did not send the browser back to kiln's callback")
}

/// BinderHub's own JavaScript client against `url` (a `.../build/` URL) for `spec`: its events.
fn binderhub_client(url: &str, spec: &str, token: Option<&str>) -> Vec<Value> {
    let root = env!("CARGO_MANIFEST_DIR");
    let installed = Command::new("bash")
        .arg(format!("{root}/tests/services/binderhub-client.sh"))
        .output()
        .expect("bash");
    assert!(
        installed.status.success(),
        "cannot install @jupyterhub/binderhub-client (bash tests/services/binderhub-client.sh; the test command runs it): {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let home = String::from_utf8_lossy(&installed.stdout)
        .trim()
        .to_string();
    let out = Command::new("node")
        .arg(format!("{root}/tests/services/binderhub-client.mjs"))
        .args([&home, url, spec, token.unwrap_or(""), "build_only"])
        .output()
        .expect("node (installed with npm by the test command)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// jupyterhub-fancy-profiles' "build your own image": the browser makes a user token and asks
/// `/services/binder/build/...?build_only=true` (the path it assumes) with `Authorization: Bearer`,
/// waits for `ready` and reads `imageName`; nothing is launched. kiln is the hub's service
/// `binder` here, as a hub with fancy-profiles registers it.
fn fancy_profiles_builds_with_a_users_token(version: &str) {
    require_engine();
    let git = GitServer::start();
    let name = format!("svc-fancy-{}", version.replace('.', ""));
    git.example("python-default", &name);
    let binder = [
        ("KILN_HUB_SERVICE_NAME", "binder"),
        ("KILN_BASE_URL", "/services/binder/"),
    ];
    let with = HubWithKiln::start(version, &binder, &binder[..1]);
    let (token, _) = with.token(
        "alice",
        json!({"expires_in": 3600, "note": "fancy-profiles"}),
    );
    let url = format!("http://127.0.0.1:{}/services/binder/build/", with.hub.port);
    let spec = format!("git/{}/HEAD", escaped(&git.url(&name)));
    let events = binderhub_client(&url, &spec, Some(&token));
    let last = events
        .last()
        .unwrap_or_else(|| panic!("no events; kiln's log:\n{}", with.kiln_log()));
    assert_eq!(last["phase"], "ready", "{events:?}\n{}", with.kiln_log());
    let image = last["imageName"].as_str().unwrap();
    assert!(last["url"].is_null(), "build_only launches nothing: {last}");
    assert!(phases(&events).contains(&"built"), "{events:?}");
    let (_, model) = with.hub.api("GET", "users/alice", None);
    assert!(
        model["servers"].as_object().is_some_and(|s| s.is_empty()),
        "{model}"
    );
    // Without a token, the client gets kiln's refusal (BinderHub's client shows 4xx as failed).
    let events = binderhub_client(&url, &spec, None);
    assert_eq!(events.last().unwrap()["phase"], "failed", "{events:?}");
    assert!(
        events.last().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("401"),
        "{events:?}"
    );
    remove_image(image);
}

#[test]
fn fancy_profiles_builds_with_a_users_token_on_jupyterhub_6() {
    fancy_profiles_builds_with_a_users_token("6.1.1");
}

#[test]
fn fancy_profiles_builds_with_a_users_token_on_jupyterhub_5() {
    fancy_profiles_builds_with_a_users_token("5.4.6");
}

#[test]
fn hub_users_have_limits_of_their_own_and_groups_decide_who_builds() {
    require_engine();
    let with = HubWithKiln::start(
        "6.1.1",
        &[
            ("KILN_RATE_LIMIT", "1"),
            ("KILN_BUILD_GROUPS", "students,workshop"),
            ("KILN_GROUP_LIMITS", "workshop=rate:3"),
        ],
        &[("KILN_HUB_USERS_GROUPS", "students=alice bob;workshop=carol")],
    );
    let nowhere = format!(
        "{BASE}build/git/{}/HEAD?build_only=true",
        escaped("http://127.0.0.1:1/nothing.git")
    );
    let proxy = with.proxy();
    let status = |user: &str| {
        let (token, _) = with.token(user, json!({"note": "limits"}));
        let nowhere = nowhere.clone();
        move |proxy: &Http| {
            let head = proxy.head(&nowhere, &format!("Authorization: token {token}\r\n"));
            head.split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u16>().ok())
                .unwrap_or(0)
        }
    };
    let (alice, bob, carol, dave) = (
        status("alice"),
        status("bob"),
        status("carol"),
        status("dave"),
    );
    // Every request comes from the proxy's address; each user still has a window of their own.
    assert_eq!(alice(&proxy), 200);
    assert_eq!(alice(&proxy), 429, "alice's second build in the hour");
    assert_eq!(bob(&proxy), 200, "bob is not limited by alice's requests");
    // The workshop group's limit is larger.
    for n in 1..=3 {
        assert_eq!(carol(&proxy), 200, "carol's request {n}");
    }
    assert_eq!(carol(&proxy), 429);
    // dave is in neither group.
    assert_eq!(dave(&proxy), 403);
    let (token, _) = with.token("dave", json!({"note": "why"}));
    let (_, answer) = proxy.request(
        "GET",
        &nowhere,
        &format!("Accept: text/event-stream\r\nAuthorization: token {token}\r\n"),
        "",
    );
    assert!(
        answer.contains("only members of the hub groups students, workshop may"),
        "{answer}"
    );

    // A token kiln has checked is not asked about again within the minute: ten calls, one
    // question to the hub (its log names the user each question was asked with).
    let hub_log = || std::fs::read_to_string(&with.hub.log).unwrap_or_default();
    let asked = || hub_log().matches("/hub/api/user (erin@").count();
    let (token, _) = with.token("erin", json!({"note": "cached"}));
    for _ in 0..10 {
        let (status, answer) = proxy.request(
            "GET",
            &format!("{BASE}api/me"),
            &format!("Authorization: token {token}\r\n"),
            "",
        );
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("\"erin\""), "{answer}");
    }
    assert_eq!(
        asked(),
        1,
        "the hub was asked about one token {} times",
        asked()
    );
}

/// A git repository (the `python-default` example) at `root/<name>`, for a [`GitHttpServer`].
fn private_repository(root: &std::path::Path, name: &str) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "--quiet"]);
    copy_tree(&examples().join("python-default"), &dir);
    git(&dir, &["add", "--all"]);
    git(&dir, &["commit", "--quiet", "-m", "private"]);
}

/// A JSON call through the proxy with a hub token: status and body.
fn as_user(
    proxy: &Http,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, answer) = proxy.request(
        method,
        path,
        &format!("Authorization: token {token}\r\nContent-Type: application/json\r\n"),
        &body,
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body = body.lines().find(|l| l.starts_with('{')).unwrap_or(body);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// binderhub #1154: each hub user keeps their own token for a git host; kiln uses it only for
/// that user's builds of repositories on that host, names the image so no one can guess it, and
/// shows the build to no one else.
#[test]
fn a_hub_users_own_git_token_builds_their_private_repository_and_no_one_elses() {
    require_engine();
    let root = tempfile::tempdir().unwrap();
    private_repository(root.path(), "private");
    let server = GitHttpServer::start(root.path(), "alice", "alice-s3cret-token");
    let host = server.url().trim_start_matches("http://").to_string();
    let with = HubWithKiln::start("6.1.1", &[], &[]);
    let proxy = with.proxy();
    let (alice, _) = with.token("alice", json!({"note": "private"}));
    let (bob, _) = with.token("bob", json!({"note": "private"}));
    let credentials = |host: &str| format!("{BASE}api/credentials/{host}");

    // Only hub users keep credentials; what they store is never answered back.
    let (status, _) = proxy.json("GET", &format!("{BASE}api/credentials"), None);
    assert_eq!(status, 401);
    let stored = json!({"username": "alice", "token": "alice-s3cret-token"});
    let (status, answer) = as_user(&proxy, &alice, "PUT", &credentials(&host), Some(stored));
    assert_eq!(status, 200, "{answer}");
    let (status, listed) = as_user(
        &proxy,
        &alice,
        "GET",
        &format!("{BASE}api/credentials"),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(listed["credentials"][0]["host"], host.as_str(), "{listed}");
    assert!(!listed.to_string().contains("s3cret"), "{listed}");
    let (_, listed) = as_user(&proxy, &bob, "GET", &format!("{BASE}api/credentials"), None);
    assert_eq!(
        listed["credentials"],
        json!([]),
        "bob sees alice's hosts: {listed}"
    );
    let (status, answer) = as_user(
        &proxy,
        &alice,
        "PUT",
        &credentials("alice@git.example"),
        Some(json!({"username": "a", "token": "b"})),
    );
    assert_eq!(status, 400, "{answer}");

    // alice's build uses her token and gets an image name of its own.
    let spec = format!("{}/HEAD", escaped(&format!("{}/private", server.url())));
    let build = format!("{BASE}build/git/{spec}");
    let (events, raw) = proxy.events_with(&build, &format!("Authorization: token {alice}\r\n"));
    let last = events
        .last()
        .unwrap_or_else(|| panic!("{raw}\n{}", with.kiln_log()));
    assert_eq!(last["phase"], "ready", "{events:?}\n{}", with.kiln_log());
    let image = last["image"].as_str().unwrap().to_string();
    // ... and she lands in a server of her own, with that image.
    let url = last["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}user/alice/", with.hub.url())),
        "{url}"
    );
    let named = url.trim_end_matches('/').rsplit('/').next().unwrap();
    let (_, model) = with.hub.api("GET", "users/alice", None);
    assert_eq!(
        model["servers"][named]["user_options"]["image"],
        image.as_str(),
        "{model}"
    );
    assert!(
        image.contains("private-") && !image.contains(&host.replace(':', "-")),
        "{image}"
    );
    assert!(
        server
            .credentials_seen()
            .iter()
            .all(|c| c == "alice:alice-s3cret-token"),
        "{:?}",
        server.credentials_seen()
    );
    let (_, images) = as_user(&proxy, &alice, "GET", &format!("{BASE}api/images"), None);
    let mine = images["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["image"] == image.as_str())
        .unwrap_or_else(|| panic!("alice's image is not in her list: {images}"))
        .clone();
    let id = mine["id"].as_str().unwrap();
    assert!(!images.to_string().contains("s3cret"), "{images}");

    // bob: the same repository without a token of his own fails, sends no credentials, joins
    // nothing; alice's build, events and image are not his to see.
    let seen_before = server.credentials_seen().len();
    let (events, _) = proxy.events_with(&build, &format!("Authorization: token {bob}\r\n"));
    assert_eq!(events.last().unwrap()["phase"], "failed", "{events:?}");
    assert!(
        events.last().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("authentication"),
        "{events:?}"
    );
    assert_eq!(
        server.credentials_seen().len(),
        seen_before,
        "bob's build sent credentials"
    );
    let (_, model) = with.hub.api("GET", "users/bob", None);
    assert!(
        model["servers"].as_object().is_none_or(|s| s.is_empty()),
        "bob got a server: {model}"
    );
    for path in [
        format!("{BASE}api/builds/{id}"),
        format!("{BASE}api/builds/{id}/events"),
    ] {
        let (status, answer) = as_user(&proxy, &bob, "GET", &path, None);
        assert_eq!(status, 404, "bob reads {path}: {answer}");
        let (status, _) = proxy.json("GET", &path, None);
        assert_eq!(status, 404, "an anonymous caller reads {path}");
    }
    let (status, _) = as_user(
        &proxy,
        &alice,
        "GET",
        &format!("{BASE}api/builds/{id}"),
        None,
    );
    assert_eq!(status, 200);
    let (_, images) = as_user(&proxy, &bob, "GET", &format!("{BASE}api/images"), None);
    assert!(
        !images.to_string().contains(&image),
        "bob lists alice's image: {images}"
    );
    let (status, _) = as_user(
        &proxy,
        &bob,
        "GET",
        &format!("{BASE}api/images/{image}/sbom"),
        None,
    );
    assert_eq!(status, 404);

    // Forgetting the token: alice's next build of a new commit cannot authenticate.
    let (status, _) = as_user(&proxy, &alice, "DELETE", &credentials(&host), None);
    assert_eq!(status, 204);
    let (status, _) = as_user(&proxy, &alice, "DELETE", &credentials(&host), None);
    assert_eq!(status, 404);
    assert!(
        !with.kiln_log().contains("s3cret"),
        "a secret reached kiln's log"
    );
    remove_image(&image);
}

/// A user's token is bound to the host it was given for: a repository on another host, or one
/// that redirects there from the token's host, gets none of it.
#[test]
fn a_users_token_for_one_host_is_never_sent_to_another_host() {
    require_engine();
    let root = tempfile::tempdir().unwrap();
    private_repository(root.path(), "elsewhere");
    let other = GitHttpServer::start(root.path(), "other", "other-password");
    let redirector = Redirector::start(&other.url());
    let with = HubWithKiln::start("6.1.1", &[], &[]);
    let proxy = with.proxy();
    let (alice, _) = with.token("alice", json!({"note": "bound"}));
    let header = format!("Authorization: token {alice}\r\n");
    let token_host = format!("127.0.0.1:{}", redirector.port);
    let (status, answer) = as_user(
        &proxy,
        &alice,
        "PUT",
        &format!("{BASE}api/credentials/{token_host}"),
        Some(json!({"username": "alice", "token": "alice-s3cret-token"})),
    );
    assert_eq!(status, 200, "{answer}");
    for url in [
        format!("{}/elsewhere", other.url()),
        format!("http://{token_host}/elsewhere"),
    ] {
        let spec = format!("{}/HEAD", escaped(&url));
        let (events, _) =
            proxy.events_with(&format!("{BASE}build/git/{spec}?build_only=true"), &header);
        assert_eq!(
            events.last().unwrap()["phase"],
            "failed",
            "{url}: {events:?}"
        );
    }
    assert!(
        redirector.hits.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the redirect was not tried"
    );
    assert!(
        !other.credentials_seen().iter().any(|c| c.contains("alice")),
        "alice's token reached another host: {:?}",
        other.credentials_seen()
    );
    assert!(
        !with.kiln_log().contains("s3cret"),
        "a secret reached kiln's log"
    );
}

/// Wait up to `seconds` for `done` in the browser; on failure, keep a screenshot and say where the
/// browser is and what the page shows.
fn wait_in(chromium: &Chromium, seconds: u64, what: &str, done: impl Fn(&Chromium) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done(chromium) {
        if Instant::now() > deadline {
            chromium.screenshot("hub-page-failed.png");
            let source = chromium.call("GET", "/source", None);
            panic!(
                "{what}: not within {seconds} s; the browser is at {}; the page:\n{}",
                chromium.url(),
                source["value"].as_str().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Whether an element matching `css` is on the page now.
fn present(chromium: &Chromium, css: &str) -> bool {
    let found = chromium.call(
        "POST",
        "/elements",
        Some(json!({"using": "css selector", "value": css})),
    );
    found["value"].as_array().is_some_and(|a| !a.is_empty())
}

/// The whole way a person goes, in headless Chromium through the hub's proxy: kiln's page sends
/// them to the hub's login, the hub's OAuth brings them back logged in, they paste a repository,
/// watch its log, and open their own server with that image (a screenshot of each step is kept
/// in test-artifacts/).
#[test]
fn in_a_browser_a_hub_user_logs_in_pastes_a_repository_and_opens_their_own_server() {
    require_engine();
    let git = GitServer::start();
    git.example("python-default", "svc-browser");
    let with = HubWithKiln::start("6.1.1", &[], &[]);
    let chromium = Chromium::start();
    let page = format!("{}services/kiln/", with.hub.url());
    chromium.call("POST", "/url", Some(json!({"url": page})));
    wait_in(&chromium, 30, "the hub's login form", |c| {
        present(c, "#username_input")
    });
    assert!(
        chromium.url().contains("/hub/login"),
        "kiln's page sends an anonymous visitor to the hub's login: {}",
        chromium.url()
    );
    for (css, text) in [("#username_input", "alice"), ("#password_input", "any")] {
        let input = chromium.element(css);
        chromium.call(
            "POST",
            &format!("/element/{input}/value"),
            Some(json!({"text": text})),
        );
    }
    let submit = chromium.element("#login_submit");
    chromium.call("POST", &format!("/element/{submit}/click"), Some(json!({})));
    wait_in(&chromium, 30, "back on kiln's page, logged in", |c| {
        present(c, "#who-name") && c.text("#who-name") == "alice"
    });
    assert_eq!(chromium.url(), page, "the login returns to kiln's page");

    // A token for a private git host, kept through the page's form; the page shows the host and
    // the username, never the token, and forgets it on request.
    for (css, text) in [
        ("#private-host", "git.example.org:8443"),
        ("#private-username", "alice"),
        ("#private-token", "page-s3cret-token"),
    ] {
        let input = chromium.element(css);
        chromium.call(
            "POST",
            &format!("/element/{input}/value"),
            Some(json!({"text": text})),
        );
    }
    let save = chromium.element("#private-save");
    chromium.call("POST", &format!("/element/{save}/click"), Some(json!({})));
    wait_in(&chromium, 30, "the saved host in the list", |c| {
        present(c, ".private-host")
            && c.text(".private-host")
                .contains("git.example.org:8443 as alice")
    });
    chromium.screenshot("hub-page-logged-in.png");
    let source = chromium.call("GET", "/source", None)["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!source.contains("page-s3cret"), "the page shows the token");
    let forget = chromium.element(".private-host button");
    chromium.call("POST", &format!("/element/{forget}/click"), Some(json!({})));
    wait_in(&chromium, 30, "the host forgotten", |c| {
        !present(c, ".private-host")
    });

    let repo = chromium.element("#repo");
    chromium.call(
        "POST",
        &format!("/element/{repo}/value"),
        Some(json!({"text": git.url("svc-browser")})),
    );
    let launch = chromium.element("#launch");
    chromium.call("POST", &format!("/element/{launch}/click"), Some(json!({})));
    wait_in(&chromium, 300, "the build's ready", |c| {
        matches!(c.text("#phase").as_str(), "ready" | "failed")
    });
    assert_eq!(
        chromium.text("#phase"),
        "ready",
        "log: {}\nkiln's log:\n{}",
        chromium.text("#log"),
        with.kiln_log()
    );
    assert!(chromium.text("#log").contains("Resolved to commit"));
    chromium.screenshot("hub-page-ready.png");
    let link = chromium.element("#session-link");
    let href = chromium.call("GET", &format!("/element/{link}/property/href"), None)["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        href.starts_with(&format!("{}user/alice/svc-browser-", with.hub.url())),
        "the session is alice's own named server: {href}"
    );

    // Opening it shows JupyterLab, served by her server through the hub's proxy.
    chromium.call("POST", "/url", Some(json!({"url": href})));
    wait_in(&chromium, 120, "JupyterLab in alice's server", |c| {
        c.url().contains("/user/alice/") && present(c, "#jp-top-panel, .jp-LabShell, #main")
    });
    chromium.screenshot("hub-session.png");
    let server = href
        .split("/user/alice/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    let (_, model) = with.hub.api("GET", "users/alice", None);
    let image = model["servers"][&server]["user_options"]["image"]
        .as_str()
        .unwrap_or_else(|| panic!("alice has no server {server}: {model}"))
        .to_string();
    assert!(image.contains("svc-browser"), "{image}");
    drop(chromium);
    remove_image(&image);
}
