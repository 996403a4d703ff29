//! BinderHub's remaining surface, beside the service tests: the badges, the legacy `/repo/` links,
//! `/api/repoproviders`, `status_code` on failures, per-spec quotas (`spec_config`), `gl` on a
//! GitLab of one's own and `master`/`main` falling back to `HEAD`. The first tests run in-process
//! on a scripted engine; the last builds for real from a git server on loopback.

use std::time::Duration;

use crate::support::in_process::{InProcess, ScriptedEngine};
use crate::support::service::{Service, escaped};
use crate::support::*;

const IMAGE: &str = "kiln/scripted:0123456789012345678901234567890123456789";

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[test]
fn the_badges_are_served_at_binderhubs_addresses_in_its_sizes() {
    let service = InProcess::start(ScriptedEngine::building(IMAGE, 1, Duration::ZERO), |_| {});
    for (path, size) in [
        ("/badge_logo.svg", r#"width="109" height="20""#),
        ("/badge.svg", r#"width="92" height="20""#),
        ("/assets/images/badge.svg", r#"width="92" height="20""#),
    ] {
        let (status, response) = service.get(path, None);
        assert_eq!(status, 200, "{path}: {response}");
        assert_eq!(header(&response, "content-type"), Some("image/svg+xml"));
        assert!(
            header(&response, "cache-control").is_some_and(|c| c.contains("max-age")),
            "{response}"
        );
        let svg = body(&response);
        assert!(
            svg.starts_with("<svg") && svg.contains(size),
            "{path}: {svg}"
        );
        assert!(
            svg.contains(">launch<") && svg.contains(">binder<"),
            "{svg}"
        );
    }
    // The page's own logo moved out of the badge's way.
    let (status, logo) = service.get("/static/logo.svg", None);
    assert_eq!(status, 200);
    assert!(body(&logo).contains(r#"width="64""#), "{logo}");
}

#[test]
fn legacy_repo_links_redirect_to_the_master_branch_and_the_path() {
    let service = InProcess::start(ScriptedEngine::building(IMAGE, 1, Duration::ZERO), |_| {});
    for (link, to) in [
        (
            "/repo/binder-examples/requirements",
            "/v2/gh/binder-examples/requirements/master",
        ),
        (
            "/repo/binder-examples/requirements/",
            "/v2/gh/binder-examples/requirements/master",
        ),
        (
            "/repo/binder-examples/requirements/notebooks/index.ipynb",
            "/v2/gh/binder-examples/requirements/master?urlpath=notebooks%2Findex.ipynb",
        ),
    ] {
        let (status, response) = service.get(link, None);
        assert!((300..400).contains(&status), "{link}: {response}");
        assert_eq!(header(&response, "location"), Some(to), "{link}");
    }
}

#[test]
fn repoproviders_describes_each_provider_with_the_configured_hosts() {
    let service = InProcess::start(ScriptedEngine::building(IMAGE, 1, Duration::ZERO), |c| {
        c.providers.gitlab = "https://gitlab.example.org".into();
    });
    let (status, providers) = service.json("GET", "/api/repoproviders", None);
    assert_eq!(status, 200, "{providers}");
    let ids: Vec<&str> = providers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "gh",
            "gist",
            "gl",
            "git",
            "zenodo",
            "figshare",
            "dataverse",
            "hydroshare",
            "swhid",
            "doi"
        ]
    );
    for provider in providers.as_array().unwrap() {
        for field in ["displayName", "spec", "detect", "repo", "ref"] {
            assert!(provider.get(field).is_some(), "{field} in {provider}");
        }
        assert_eq!(provider["ref"]["default"], "HEAD");
    }
    let gl = &providers[2];
    assert_eq!(gl["repo"]["urlEncode"], true);
    assert!(
        gl["detect"]["regex"]
            .as_str()
            .unwrap()
            .contains(r"gitlab\.example\.org"),
        "{gl}"
    );
    assert!(
        gl["repo"]["label"]
            .as_str()
            .unwrap()
            .contains("gitlab.example.org")
    );
}

#[test]
fn failed_events_carry_a_status_code_that_says_what_failed() {
    let service = InProcess::start(ScriptedEngine::failing("a step failed"), |_| {});
    let (events, _) = service.events("/build/zz/a/b/HEAD");
    let last = events.last().unwrap();
    assert_eq!(
        (last["phase"].as_str(), last["status_code"].as_u64()),
        (Some("failed"), Some(400)),
        "{last}"
    );
    let (events, _) = service.events(&format!(
        "/build/git/{}/HEAD",
        escaped("git://127.0.0.1:9/broken")
    ));
    let last = events.last().unwrap();
    assert_eq!(
        (last["phase"].as_str(), last["status_code"].as_u64()),
        (Some("failed"), Some(500)),
        "{last}"
    );
    // Events before the failure carry none.
    assert!(
        events[..events.len() - 1]
            .iter()
            .all(|e| e.get("status_code").is_none())
    );
}

#[test]
fn spec_config_closes_launches_of_matching_specs_and_keeps_others_open() {
    let service = InProcess::start(ScriptedEngine::building(IMAGE, 1, Duration::ZERO), |c| {
        c.spec_config = vec![kiln_api::config::SpecQuota {
            pattern: "git/git://127.0.0.1:9/closed*".into(),
            quota: 0,
        }];
    });
    let path = |name: &str| {
        format!(
            "/build/git/{}/HEAD",
            escaped(&format!("git://127.0.0.1:9/{name}"))
        )
    };
    let (events, _) = service.events(&path("closed-course"));
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "failed", "{events:?}");
    assert_eq!(last["status_code"], 429, "{last}");
    assert!(
        last["message"].as_str().unwrap().contains("(0 of 0)"),
        "{last}"
    );
    // It was built (a quota on sessions does not stop builds), then not launched.
    assert!(events.iter().any(|e| e["phase"] == "built"), "{events:?}");
    let (events, _) = service.events(&path("open-course"));
    assert_eq!(events.last().unwrap()["phase"], "ready", "{events:?}");
}

/// A `gl` spec on the operator's own GitLab (here a git daemon on loopback stands in for it: the
/// provider needs only git), for a project whose default branch is `trunk`: the link's `main` is
/// retried as `HEAD` with a `waiting` event, as BinderHub keeps old links working.
#[test]
fn a_gl_spec_on_the_configured_gitlab_whose_main_is_missing_builds_its_default_branch() {
    require_engine();
    let server = GitServer::start();
    let dir = server.init("group/project");
    std::process::Command::new("git")
        .args(["symbolic-ref", "HEAD", "refs/heads/trunk"])
        .current_dir(&dir)
        .status()
        .unwrap();
    let commit = server.commit(
        "group/project",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN echo {}\n",
                kiln_buildpacks::options::DEFAULT_BASE_IMAGE,
                unique("gitlab")
            ),
        )],
        "on trunk",
    );
    let state = tempfile::tempdir().unwrap();
    let gitlab = format!("git://127.0.0.1:{}", server.port);
    let service = Service::start_with(
        &state.path().join("state.db"),
        &[("KILN_GITLAB_HOST", gitlab.as_str())],
    );
    let (events, _) = service.events(&format!(
        "/build/gl/{}/main?build_only=true",
        escaped("group/project")
    ));
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "ready", "{events:?}");
    let image = last["imageName"].as_str().unwrap();
    assert!(image.ends_with(&commit), "{image} is not of {commit}");
    let waiting = events
        .iter()
        .find(|e| e["phase"] == "waiting")
        .unwrap_or_else(|| panic!("no waiting event: {events:?}"));
    let message = waiting["message"].as_str().unwrap();
    assert!(
        message.contains("\"main\"") && message.contains("HEAD"),
        "{message}"
    );
    remove_image(image);
    // A branch that is neither master nor main is not guessed.
    let (events, _) = service.events(&format!(
        "/build/gl/{}/develop?build_only=true",
        escaped("group/project")
    ));
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "failed", "{events:?}");
    assert_eq!(last["status_code"], 404, "{last}");
}
