//! Communities and their catalogues against a real engine, registry and git server: community
//! files in a watched folder, entries built on first load, not rebuilt when nothing changed,
//! rebuilt when their branch moves, promoted automatically or held for an admin, smoke tests,
//! deprecation and retirement, quotas, the profile list the spawn form reads, and a broken
//! community file that does not stop the others.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::service::Service;
use crate::support::{GitServer, Registry, require_engine};

/// sha256 of the admin token `biology-admin-s3cret` (`printf %s ... | sha256sum`).
fn admin_token_sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

const OPERATOR: &str = "operator-token-for-communities";
const BIOLOGY_ADMIN: &str = "biology-admin-s3cret";

/// `kiln serve` of the communities in `dir` (looked at every second; `OPERATOR` is the operator's
/// token), with extra settings; its state in a folder of its own.
fn serve_communities(dir: &std::path::Path, extra: &[(&str, &str)]) -> Service {
    let state = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("KILN_COMMUNITIES_DIR", dir.to_str().unwrap()),
        ("KILN_CATALOG_TICK_SECONDS", "1"),
        ("KILN_BUILD_TOKEN", OPERATOR),
    ];
    env.extend_from_slice(extra);
    let mut service = Service::start_with(&state.path().join("state.db"), &env);
    service._dir = Some(state);
    service
}

/// The catalogue once every entry has been checked at least once (the first load's checks).
fn wait_for_checks(service: &Service, community: &str, entries: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let (status, catalog) = service.json(
            "GET",
            &format!("/api/communities/{community}/catalog"),
            None,
        );
        assert_eq!(status, 200, "{catalog}");
        let checked = catalog["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| !e["last_check"].is_null())
            .count();
        if checked == entries {
            return catalog;
        }
        assert!(
            Instant::now() < deadline,
            "the first checks of {community} did not end: {catalog:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn entry<'a>(catalog: &'a Value, slug: &str) -> &'a Value {
    catalog["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["slug"] == slug)
        .unwrap_or_else(|| panic!("no entry {slug} in {catalog:#}"))
}

fn request_as(
    service: &crate::support::service::Http,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let headers = match token {
        Some(t) => format!("Content-Type: application/json\r\nAuthorization: token {t}\r\n"),
        None => "Content-Type: application/json\r\n".to_string(),
    };
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, response) = service.request(method, path, &headers, &body);
    let json = response.split("\r\n\r\n").nth(1).unwrap_or("null");
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

fn choices(profiles: &Value, slug: &str) -> Value {
    profiles
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["slug"] == slug)
        .map(|p| p["profile_options"]["image"]["choices"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn communities_build_check_promote_and_offer_their_catalogues() {
    require_engine();
    let registry = Registry::start(None);
    let server = GitServer::start();
    server.example("python-default", "course");
    let repo = server.url("course");
    let communities = tempfile::tempdir().unwrap();
    let host = registry.host();
    std::fs::write(
        communities.path().join("physics.toml"),
        format!(
            r#"name = "Physics 101"
registry_prefix = "{host}/physics-"

[[entry]]
slug = "python"
name = "Python for physics"
description = "The course environment"
source = "{repo}"
ref = "main"
resources = {{ cpu_limit = 2 }}

[[entry]]
slug = "broken"
name = "An environment whose smoke test fails"
source = "{repo}"
ref = "main"
smoke = ["python", "-c", "import notthere"]
"#
        ),
    )
    .unwrap();
    std::fs::write(
        communities.path().join("biology.toml"),
        format!(
            r#"name = "Biology lab"
registry_prefix = "{host}/biology-"

[admins]
token_sha256 = "{}"

[quotas]
builds_per_day = 1

[[entry]]
slug = "python"
name = "Python for biology"
source = "{repo}"
ref = "main"
promotion = "manual"
"#,
            admin_token_sha256(BIOLOGY_ADMIN)
        ),
    )
    .unwrap();
    // A broken file: reported with its place; the others keep serving.
    std::fs::write(
        communities.path().join("chemistry.toml"),
        "name = \"Chemistry\"\n[[entry]]\nslug = \"py\"\nname = \"Py\"\nsource = \"gh:a/b\"\nrebuild = { schedule = \"every night\" }\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("kiln.log");
    let service = Service::start_logged(
        &state.path().join("state.db"),
        &[
            ("KILN_COMMUNITIES_DIR", communities.path().to_str().unwrap()),
            ("KILN_CATALOG_TICK_SECONDS", "1"),
            ("KILN_BUILD_TOKEN", OPERATOR),
            (
                "KILN_CATALOG_ENVIRONMENT_PREFIX",
                &format!("{host}/shared-"),
            ),
        ],
        &log,
    );
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // The communities, and the broken file for the operator only.
    let (_, listed) = service.json("GET", "/communities", None);
    let ids: Vec<&str> = listed["communities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["biology", "physics"], "{listed}");
    let (status, _) = request_as(&service, "GET", "/api/communities", None, None);
    assert_eq!(status, 403);
    let (_, operator) = request_as(&service, "GET", "/api/communities", Some(OPERATOR), None);
    let error = operator["errors"][0]["text"].as_str().unwrap_or_default();
    assert!(
        error.contains("chemistry.toml:3:8:") && error.contains("is not a cron expression"),
        "{operator}"
    );

    // Built on first load: physics promotes automatically after the smoke test; the entry whose
    // smoke test fails is built but not offered.
    let physics = wait_for_checks(&service, "physics", 2);
    let python = entry(&physics, "python");
    let v1 = &python["versions"][0];
    assert_eq!(v1["number"], 1, "{physics:#}\n{}", log_text());
    assert_eq!(v1["state"], "promoted", "{physics:#}\n{}", log_text());
    let tag = v1["tag"].as_str().unwrap();
    assert!(
        tag.starts_with(&format!("{host}/physics-python:v1-")),
        "{tag}"
    );
    let digest = registry
        .digest(tag, None)
        .expect("version 1 is in the registry");
    assert_eq!(
        v1["image"],
        format!("{host}/physics-python@{digest}"),
        "the catalogue names the image by its registry digest"
    );
    assert!(v1.get("build_id").is_none(), "build ids are for admins");
    let broken = &entry(&physics, "broken")["versions"][0];
    assert_eq!(broken["state"], "broken", "{physics:#}");
    let reason = broken["reason"].as_str().unwrap();
    assert!(
        reason.contains("exited 1") && reason.contains("notthere"),
        "{reason}"
    );

    // The spawn form's list: the promoted version by digest, the overrides, nothing broken.
    let (status, profiles) = service.json("GET", "/communities/physics/profiles", None);
    assert_eq!(status, 200);
    assert_eq!(profiles.as_array().unwrap().len(), 1, "{profiles:#}");
    assert_eq!(profiles[0]["kubespawner_override"]["image"], v1["image"]);
    assert_eq!(profiles[0]["kubespawner_override"]["cpu_limit"], 2);

    // Nothing changed: a check builds nothing.
    let check = "/api/communities/physics/entries/python/check?wait=true";
    let (status, report) = request_as(&service, "POST", check, Some(OPERATOR), None);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["outcome"], "nothing", "{report}");
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("nothing changed since version 1"),
        "{report}"
    );
    // Nobody else may ask.
    let (status, _) = request_as(&service, "POST", check, None, None);
    assert_eq!(status, 403);
    let (status, _) = request_as(&service, "POST", check, Some(BIOLOGY_ADMIN), None);
    assert_eq!(status, 403, "biology's admin is not physics's");

    // The branch moves: version 2 is built and promoted; version 1 is still offered (keep = 3).
    let moved = server.commit("course", &[("week2.md", "# Week 2\n")], "week 2");
    let (status, report) = request_as(&service, "POST", check, Some(OPERATOR), None);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["outcome"], "built", "{report}\n{}", log_text());
    assert_eq!(report["version"]["number"], 2);
    assert_eq!(report["version"]["state"], "promoted", "{report}");
    assert_eq!(report["version"]["commit"], moved);
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("main moved from")
    );
    let (_, profiles) = service.json("GET", "/communities/physics/profiles", None);
    let offered = choices(&profiles, "python");
    assert_eq!(offered["v2"]["default"], true, "{profiles:#}");
    assert_eq!(offered["v1"]["default"], false, "{profiles:#}");
    assert_ne!(
        profiles[0]["kubespawner_override"]["image"], v1["image"],
        "the default is the new version"
    );

    // Deprecate version 1: still offered, marked with the reason; then retire it: gone.
    let version_op = |n: u32, op: &str, body: Value| {
        request_as(
            &service,
            "POST",
            &format!("/api/communities/physics/entries/python/versions/{n}/{op}"),
            Some(OPERATOR),
            Some(body),
        )
    };
    let (status, answer) = version_op(1, "deprecate", json!({}));
    assert_eq!(status, 400, "a deprecation needs a reason: {answer}");
    let (status, answer) = version_op(1, "deprecate", json!({"reason": "numpy 2 breaks week 1"}));
    assert_eq!(status, 200, "{answer}");
    let (_, profiles) = service.json("GET", "/communities/physics/profiles", None);
    assert_eq!(
        choices(&profiles, "python")["v1"]["display_name"],
        "v1 (deprecated: numpy 2 breaks week 1)"
    );
    let (status, answer) = version_op(1, "retire", json!({"reason": "replaced by v2"}));
    assert_eq!(status, 200, "{answer}");
    let (_, profiles) = service.json("GET", "/communities/physics/profiles", None);
    let offered = choices(&profiles, "python");
    assert!(offered.get("v1").is_none(), "{profiles:#}");
    // Retention: the dry run lists the retired version and the broken entry's image, and deletes
    // nothing; applied, the registry's own listing no longer has them, and version 2 stays.
    let retention = "/api/communities/physics/retention";
    let (status, dry) = request_as(&service, "POST", retention, Some(OPERATOR), None);
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    let doomed = |report: &Value| -> Vec<(String, u64)> {
        report["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["entry"].as_str().unwrap().to_string(),
                    i["version"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        doomed(&dry),
        [("broken".to_string(), 1), ("python".to_string(), 1)],
        "{dry}"
    );
    assert!(
        registry.digest(tag, None).is_some(),
        "a dry run deletes nothing"
    );
    let (status, applied) = request_as(
        &service,
        "POST",
        &format!("{retention}?apply=true"),
        Some(OPERATOR),
        None,
    );
    assert_eq!(status, 200, "{applied}");
    assert_eq!(doomed(&applied), doomed(&dry));
    assert_eq!(registry.digest(tag, None), None);
    let v2_tag = report["version"]["image"].as_str().unwrap();
    // Left: version 2 and its referrers' tag index (its contents record and SBOM); version 1's
    // index went with it.
    let v2_index = report["version"]["digest"]
        .as_str()
        .unwrap()
        .replacen(':', "-", 1);
    assert_eq!(
        registry.tags("physics-python"),
        [v2_index, v2_tag.rsplit_once(':').unwrap().1.to_string()]
    );
    assert!(registry.tags("physics-broken").is_empty());
    let (_, again) = request_as(&service, "POST", retention, Some(OPERATOR), None);
    assert!(
        doomed(&again).is_empty(),
        "deleted images are recorded: {again}"
    );

    // A broken version cannot be promoted.
    let (status, answer) = request_as(
        &service,
        "POST",
        "/api/communities/physics/entries/broken/versions/1/promote",
        Some(OPERATOR),
        None,
    );
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("is broken"),
        "{answer}"
    );

    // Biology promotes by hand: its version waits, then its admin promotes it.
    let biology = wait_for_checks(&service, "biology", 1);
    // One environment for both communities: built once under the shared prefix, the other first
    // versions assembled on it in the registry.
    let how: Vec<String> = [
        (&biology, "python"),
        (&physics, "python"),
        (&physics, "broken"),
    ]
    .iter()
    .map(|(catalog, slug)| {
        let versions = entry(catalog, slug)["versions"].as_array().unwrap();
        versions.last().unwrap()["built"]
            .as_str()
            .unwrap()
            .to_string()
    })
    .collect();
    let shared_env = format!("{host}/shared-kiln-environment:");
    let built = how
        .iter()
        .filter(|m| m.contains(&format!("Built the environment {shared_env}")))
        .count();
    let assembled = how
        .iter()
        .filter(|m| m.contains(&format!("assembled on the environment {shared_env}")))
        .count();
    assert_eq!((built, assembled), (1, 2), "{how:#?}");
    let bio = &entry(&biology, "python")["versions"][0];
    assert_eq!(bio["state"], "candidate", "{biology:#}\n{}", log_text());
    let bio_tag = bio["tag"].as_str().unwrap();
    assert!(
        bio_tag.starts_with(&format!("{host}/biology-python:v1-")),
        "{bio_tag}"
    );
    let (_, profiles) = service.json("GET", "/communities/biology/profiles", None);
    assert_eq!(profiles, json!([]), "nothing is offered before promotion");
    let (status, answer) = request_as(
        &service,
        "POST",
        "/api/communities/biology/entries/python/versions/1/promote",
        Some(BIOLOGY_ADMIN),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    let (_, profiles) = service.json("GET", "/communities/biology/profiles", None);
    assert_eq!(profiles.as_array().unwrap().len(), 1, "{profiles:#}");
    assert!(
        profiles[0]["kubespawner_override"]["image"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{host}/biology-python@sha256:")),
        "{profiles:#}"
    );
    // The admin sees the build id, which opens the version's build log.
    let (_, biology) = request_as(
        &service,
        "GET",
        "/api/communities/biology/catalog",
        Some(BIOLOGY_ADMIN),
        None,
    );
    let build_id = entry(&biology, "python")["versions"][0]["build_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, build) = service.json("GET", &format!("/api/builds/{build_id}"), None);
    assert_eq!(status, 200, "{build}");
    // Its quota: one build a day, used by the first load.
    let (status, answer) = request_as(
        &service,
        "POST",
        "/api/communities/biology/entries/python/check?wait=true&rebuild=true",
        Some(BIOLOGY_ADMIN),
        None,
    );
    assert_eq!(status, 429, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("quotas.builds_per_day = 1"),
        "{answer}"
    );
}

/// Type `text` into the element `css`.
fn type_into(browser: &crate::support::browser::Browser, css: &str, text: &str) {
    let id = browser.element(css);
    browser.call(
        "POST",
        &format!("/element/{id}/value"),
        Some(json!({"text": text})),
    );
}

fn click(browser: &crate::support::browser::Browser, css: &str) {
    let id = browser.element(css);
    browser.call("POST", &format!("/element/{id}/click"), Some(json!({})));
}

/// The hub's spawn form (DockerSpawner, `examples/hub/kiln_catalog.py`) offers the community's
/// catalogue as kiln answers it at spawn time, and the server started from it runs exactly the
/// version's image by digest; a version promoted later shows without restarting the hub.
#[test]
fn the_hubs_spawn_form_offers_the_catalogue_and_starts_that_exact_digest() {
    require_engine();
    let registry = Registry::start(None);
    let server = GitServer::start();
    server.example("python-default", "lab-env");
    let communities = tempfile::tempdir().unwrap();
    std::fs::write(
        communities.path().join("lab.toml"),
        format!(
            "name = \"The lab\"\nregistry_prefix = \"{}/lab-\"\n\n[[entry]]\nslug = \"python\"\nname = \"Python for the lab\"\nsource = \"{}\"\nref = \"main\"\n",
            registry.host(),
            server.url("lab-env")
        ),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("kiln.log");
    let service = Service::start_logged(
        &state.path().join("state.db"),
        &[
            ("KILN_COMMUNITIES_DIR", communities.path().to_str().unwrap()),
            ("KILN_CATALOG_TICK_SECONDS", "1"),
            ("KILN_BUILD_TOKEN", OPERATOR),
        ],
        &log,
    );
    let catalog = wait_for_checks(&service, "lab", 1);
    let v1 = entry(&catalog, "python")["versions"][0].clone();
    assert_eq!(
        v1["state"],
        "promoted",
        "{catalog:#}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let image = v1["image"].as_str().unwrap().to_string();
    assert!(image.contains("@sha256:"), "{image}");

    let kiln_url = format!("http://127.0.0.1:{}/", service.port);
    let hub = crate::support::jupyterhub::JupyterHubServer::start_with(&[
        ("KILN_CATALOG_URL", kiln_url.as_str()),
        ("KILN_CATALOG_COMMUNITY", "lab"),
    ]);
    let browser = crate::support::browser::Browser::start();
    let user = "labstudent";
    browser.call(
        "POST",
        "/url",
        Some(json!({"url": format!("{}hub/login", hub.url())})),
    );
    type_into(&browser, "#username_input", user);
    type_into(&browser, "#password_input", "any");
    click(&browser, "#login_submit");
    browser.call(
        "POST",
        "/url",
        Some(json!({"url": format!("{}hub/spawn", hub.url())})),
    );
    let form = browser.text("#kiln-catalog");
    assert!(form.contains("Python for the lab: v1"), "{form}");
    browser.screenshot("hub-spawn-form-catalogue.png");
    click(&browser, "#spawn_form button[type=submit]");
    hub.wait_until(180, "the server started from the spawn form", |hub| {
        let (_, u) = hub.api("GET", &format!("users/{user}"), None);
        u["servers"][""]["ready"] == true
    });
    let container = format!("{}-{user}", hub.container_prefix());
    let inspect = crate::support::docker(&["inspect", "--format", "{{.Config.Image}}", &container]);
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        image,
        "the session runs the catalogue's image by digest"
    );
    let (status, _) = hub.api("DELETE", &format!("users/{user}/server"), None);
    assert!(status == 202 || status == 204, "{status}");

    // A new version, promoted: the form shows it at once; the hub was not restarted.
    server.commit(
        "lab-env",
        &[("requirements.txt", "six==1.16.0\n")],
        "six for week 2",
    );
    let (status, report) = request_as(
        &service,
        "POST",
        "/api/communities/lab/entries/python/check?wait=true",
        Some(OPERATOR),
        None,
    );
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["version"]["state"], "promoted", "{report}");
    std::thread::sleep(Duration::from_secs(6)); // the hook keeps an answer for 5 s
    browser.call(
        "POST",
        "/url",
        Some(json!({"url": format!("{}hub/spawn", hub.url())})),
    );
    let form = browser.text("#kiln-catalog");
    assert!(
        form.contains("Python for the lab: v2") && form.contains("Python for the lab: v1"),
        "{form}"
    );
    // The catalogue page: the versions, a version's packages, the diff between them, the log.
    browser.call(
        "POST",
        "/url",
        Some(json!({"url": format!("{kiln_url}communities/lab")})),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !browser.text("#entries").contains("v2") {
        assert!(
            Instant::now() < deadline,
            "the catalogue page shows no versions"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let page = browser.text("#entries");
    assert!(
        page.contains("Python for the lab") && page.contains("v1"),
        "{page}"
    );
    let wait_for_detail = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let detail = format!(
                "{}\n{}",
                browser.text("#detail-title"),
                browser.text("#detail")
            );
            if detail.contains(what) {
                return detail;
            }
            assert!(
                Instant::now() < deadline,
                "no {what:?} on the page: {detail}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    click(&browser, "#entry-python .diff button");
    let diff = wait_for_detail("v1 → v2");
    assert!(
        // The default environment has six 1.17.0; the repository pins 1.16.0.
        diff.contains("six changed") && diff.contains("→ 1.16.0"),
        "{diff}"
    );
    browser.screenshot("community-catalogue-diff.png");
    click(&browser, "#entry-python tr.state-promoted button");
    let packages = wait_for_detail("packages");
    assert!(packages.contains("jupyterlab"), "{packages}");
    click(
        &browser,
        "#entry-python tr.state-promoted td:last-child button",
    );
    let log = wait_for_detail("build log");
    assert!(log.contains("Pushed"), "{log}");
    // The same diff from the command line.
    let out = crate::support::kiln()
        .args([
            "catalog",
            "diff",
            "lab",
            "python",
            "1",
            "2",
            "--service",
            &kiln_url,
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("six") && table.contains("1.16.0"), "{table}");

    // An image the catalogue does not offer cannot be started through the hub.
    let (status, body) = hub.api(
        "POST",
        &format!("users/{user}/server"),
        Some(r#"{"image": "127.0.0.1:1/not-offered:latest"}"#),
    );
    assert_eq!(status, 400, "{body}");
}

/// A registry that refuses `DELETE`: retention reports its answer, deletes nothing after it,
/// and the versions stay listed for the next run.
#[test]
fn a_registry_that_refuses_delete_is_reported_and_nothing_else_is_deleted() {
    require_engine();
    let registry = Registry::start_without_delete();
    let server = GitServer::start();
    server.example("python-default", "no-delete");
    let communities = tempfile::tempdir().unwrap();
    std::fs::write(
        communities.path().join("keep.toml"),
        format!(
            "name = \"Keep\"\nregistry_prefix = \"{}/keep-\"\n\n[[entry]]\nslug = \"python\"\nname = \"Py\"\nsource = \"{repo}\"\nref = \"main\"\n\n[[entry]]\nslug = \"broken\"\nname = \"Broken\"\nsource = \"{repo}\"\nref = \"main\"\nsmoke = [\"false\"]\n",
            registry.host(),
            repo = server.url("no-delete")
        ),
    )
    .unwrap();
    let service = serve_communities(communities.path(), &[]);
    let catalog = wait_for_checks(&service, "keep", 2);
    assert_eq!(
        entry(&catalog, "broken")["versions"][0]["state"],
        "broken",
        "{catalog:#}"
    );
    let broken_tag = entry(&catalog, "broken")["versions"][0]["tag"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, applied) = request_as(
        &service,
        "POST",
        "/api/communities/keep/retention?apply=true",
        Some(OPERATOR),
        None,
    );
    assert_eq!(status, 502, "{applied}");
    let refused = applied["refused"].as_str().unwrap();
    assert!(refused.contains("HTTP 405"), "{refused}");
    assert_eq!(
        applied["images"],
        json!([]),
        "nothing was deleted: {applied}"
    );
    assert!(registry.digest(&broken_tag, None).is_some());
    let (_, dry) = request_as(
        &service,
        "POST",
        "/api/communities/keep/retention",
        Some(OPERATOR),
        None,
    );
    assert_eq!(
        dry["images"].as_array().unwrap().len(),
        1,
        "still to delete: {dry}"
    );
}

/// The service in-process for the communities in `dir`, on a scripted engine whose builds give
/// `image`.
fn in_process_communities(
    dir: &std::path::Path,
    image: &str,
) -> crate::support::in_process::InProcess {
    let engine = crate::support::in_process::ScriptedEngine::building(image, 1, Duration::ZERO);
    let dir = dir.to_path_buf();
    crate::support::in_process::InProcess::start(engine, move |config| {
        config.communities_dir = Some(dir);
    })
}

/// A clock the test moves: the service's schedule and leases read it.
fn test_clock(
    start: i64,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicI64>,
    kiln_api::catalog::Clock,
) {
    let now = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(start));
    let read = now.clone();
    (
        now,
        std::sync::Arc::new(move || read.load(std::sync::atomic::Ordering::SeqCst)),
    )
}

/// A community file with one entry built from `repo` (images kept in the engine).
fn scheduled_community(dir: &std::path::Path, repo: &str) {
    std::fs::write(
        dir.join("lab.toml"),
        format!(
            "name = \"Lab\"\n\n[[entry]]\nslug = \"python\"\nname = \"Python\"\nsource = \"{repo}\"\nref = \"main\"\nrebuild = {{ schedule = \"0 3 * * 1\" }}\n"
        ),
    )
    .unwrap();
}

fn in_process_with(
    clock: kiln_api::catalog::Clock,
    communities: &std::path::Path,
    catalog_state: Option<&std::path::Path>,
    build_seconds: u64,
) -> crate::support::in_process::InProcess {
    let engine = crate::support::in_process::ScriptedEngine::building(
        "kiln/scripted:built",
        1,
        Duration::from_secs(build_seconds),
    );
    let (communities, catalog_state) = (
        communities.to_path_buf(),
        catalog_state.map(std::path::Path::to_path_buf),
    );
    crate::support::in_process::InProcess::start_with_clock(engine, clock, move |config| {
        config.communities_dir = Some(communities);
        config.catalog_tick_seconds = 1;
        config.build_token = Some(kiln_api::config::Secret::new(OPERATOR));
        if let Some(state) = catalog_state {
            config.catalog_state = state;
        }
    })
}

fn last_check(http: &crate::support::service::Http) -> Value {
    let (_, catalog) = http.json("GET", "/api/communities/lab/catalog", None);
    catalog["entries"][0]["last_check"].clone()
}

fn wait_for(what: &str, seconds: u64, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {seconds} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// 2026-12-07 03:00 UTC, a Monday.
const MONDAY_0300: i64 = 1_796_612_400;

/// The schedule on an injected clock (in-process, a scripted engine, a real git server): an
/// entry is checked on first load, not again before its cron time, then at it; a branch that
/// moved is built at the next scheduled time.
#[test]
fn a_scheduled_entry_is_checked_when_its_time_comes_on_an_injected_clock() {
    let server = GitServer::start();
    server.commit("sched", &[("README.md", "one\n")], "one");
    let communities = tempfile::tempdir().unwrap();
    scheduled_community(communities.path(), &server.url("sched"));
    let (now, clock) = test_clock(MONDAY_0300 - 3600);
    let service = in_process_with(clock, communities.path(), None, 0);
    wait_for("the first load's check", 30, || {
        last_check(&service.http)["checked"] == MONDAY_0300 - 3600
    });
    let set = |t: i64| now.store(t, std::sync::atomic::Ordering::SeqCst);
    set(MONDAY_0300 - 60);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        last_check(&service.http)["checked"],
        MONDAY_0300 - 3600,
        "not due before 03:00"
    );
    set(MONDAY_0300);
    wait_for("the 03:00 check", 30, || {
        last_check(&service.http)["checked"] == MONDAY_0300
    });
    let check = last_check(&service.http);
    assert!(
        check["result"]
            .as_str()
            .unwrap()
            .contains("nothing changed since version 1"),
        "{check}"
    );
    // The branch moves on Tuesday; the check comes next Monday, and builds.
    server.commit("sched", &[("README.md", "two\n")], "two");
    set(MONDAY_0300 + 86_400);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(last_check(&service.http)["checked"], MONDAY_0300);
    set(MONDAY_0300 + 7 * 86_400);
    wait_for("next Monday's check", 30, || {
        last_check(&service.http)["checked"] == MONDAY_0300 + 7 * 86_400
    });
    let check = last_check(&service.http);
    assert!(
        check["result"]
            .as_str()
            .unwrap()
            .contains("built and promoted version 2"),
        "{check}"
    );
    assert_eq!(
        service
            .engine
            .builds
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );

    // The repository disappears: the check fails and says so; version 2 stays offered.
    std::fs::remove_dir_all(server.repo_dir("sched")).unwrap();
    let (status, report) = request_as(
        &service.http,
        "POST",
        "/api/communities/lab/entries/python/check?wait=true",
        Some(OPERATOR),
        None,
    );
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["outcome"], "failed", "{report}");
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("the last good version stays offered"),
        "{report}"
    );
    let (_, catalog) = service.json("GET", "/api/communities/lab/catalog", None);
    let entry = &catalog["entries"][0];
    assert!(!entry["last_check"]["error"].is_null(), "{catalog:#}");
    assert_eq!(entry["versions"][0]["number"], 2);
    assert_eq!(entry["versions"][0]["state"], "promoted");
    let (_, profiles) = service.json("GET", "/communities/lab/profiles", None);
    assert_eq!(
        profiles[0]["kubespawner_override"]["image"], entry["versions"][0]["image"],
        "{profiles:#}"
    );
}

/// Two replicas sharing the catalogue state check the same entry at the same time: one builds,
/// the other finds the entry held; one version, built once.
#[test]
fn two_replicas_sharing_the_catalogue_state_build_an_entry_once() {
    let server = GitServer::start();
    server.commit("replicas", &[("README.md", "one\n")], "one");
    let communities = tempfile::tempdir().unwrap();
    scheduled_community(communities.path(), &server.url("replicas"));
    let shared = tempfile::tempdir().unwrap();
    let catalog_state = shared.path().join("catalog.db");
    let (_now, clock) = test_clock(MONDAY_0300 - 3600);
    let a = in_process_with(clock.clone(), communities.path(), Some(&catalog_state), 3);
    let b = in_process_with(clock, communities.path(), Some(&catalog_state), 3);
    wait_for("the first load's check", 60, || {
        !last_check(&a.http).is_null()
    });
    std::thread::sleep(Duration::from_secs(3));
    let builds = |s: &crate::support::in_process::InProcess| {
        s.engine.builds.load(std::sync::atomic::Ordering::SeqCst)
    };
    assert_eq!(builds(&a) + builds(&b), 1, "one build for both replicas");
    let (_, catalog) = b.json("GET", "/api/communities/lab/catalog", None);
    let versions = catalog["entries"][0]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{catalog:#}");
    assert_eq!(versions[0]["state"], "promoted");
}

/// A replica that stops in the middle of a build: its lease runs out (a minute on the clock),
/// the next replica marks the interrupted version failed and builds the next one; no version
/// is lost and no tag is given twice.
#[test]
fn a_restart_in_the_middle_of_a_build_loses_no_version_and_reuses_no_tag() {
    let server = GitServer::start();
    server.commit("restart", &[("README.md", "one\n")], "one");
    let communities = tempfile::tempdir().unwrap();
    scheduled_community(communities.path(), &server.url("restart"));
    let shared = tempfile::tempdir().unwrap();
    let catalog_state = shared.path().join("catalog.db");
    let (now, clock) = test_clock(MONDAY_0300 - 3600);
    let first = in_process_with(clock.clone(), communities.path(), Some(&catalog_state), 600);
    wait_for("version 1 building", 30, || {
        let (_, catalog) = first.json("GET", "/api/communities/lab/catalog", None);
        catalog["entries"][0]["versions"][0]["state"] == "building"
    });
    drop(first);
    let second = in_process_with(clock, communities.path(), Some(&catalog_state), 0);
    std::thread::sleep(Duration::from_secs(2));
    let (_, catalog) = second.json("GET", "/api/communities/lab/catalog", None);
    assert_eq!(
        catalog["entries"][0]["versions"].as_array().unwrap().len(),
        1,
        "the lease still holds: nothing built yet: {catalog:#}"
    );
    now.fetch_add(61, std::sync::atomic::Ordering::SeqCst);
    wait_for("version 2", 30, || {
        let (_, catalog) = second.json("GET", "/api/communities/lab/catalog", None);
        catalog["entries"][0]["versions"][0]["state"] == "promoted"
    });
    let (_, catalog) = second.json("GET", "/api/communities/lab/catalog", None);
    let versions = catalog["entries"][0]["versions"].as_array().unwrap();
    // Newest first.
    assert_eq!(versions[0]["number"], 2);
    assert_eq!(versions[1]["number"], 1);
    assert_eq!(versions[1]["state"], "failed");
    assert!(
        versions[1]["reason"]
            .as_str()
            .unwrap()
            .contains("stopped while this version was building"),
        "{catalog:#}"
    );
    assert_ne!(versions[0]["tag"], versions[1]["tag"]);
}

/// The example community files stay valid, and `kiln catalog validate` names a broken file's
/// place and exits 1.
#[test]
fn kiln_catalog_validate_checks_the_examples_and_names_a_broken_files_place() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/communities");
    let out = crate::support::kiln()
        .args(["catalog", "validate"])
        .arg(&examples)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("physics-101: Physics 101 (2 entries)"),
        "{stdout}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("typo.toml"),
        "name = \"Typo\"\n\n[[entry]]\nslug = \"py\"\nname = \"Py\"\nsource = \"gh:a/b\"\npromotion = \"sometimes\"\n",
    )
    .unwrap();
    let out = crate::support::kiln()
        .args(["catalog", "validate"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("typo.toml:7:13:"), "{stderr}");
    assert!(stderr.contains("sometimes"), "{stderr}");
}

/// A community's users build their own through `/communities/<c>/build/...`: its policy admits
/// the spec (providers, repository patterns), and the image goes under its prefix (in-process,
/// a scripted engine, a real git server).
#[test]
fn a_communitys_build_your_own_follows_its_policy_and_prefix() {
    let server = GitServer::start();
    server.commit("allowed-env", &[("README.md", "one\n")], "one");
    server.commit("other", &[("README.md", "one\n")], "one");
    let communities = tempfile::tempdir().unwrap();
    std::fs::write(
        communities.path().join("lab.toml"),
        format!(
            "name = \"Lab\"\nregistry_prefix = \"127.0.0.1:5999/lab-\"\n\n[build_your_own]\nproviders = [\"git\"]\nrepositories = [\"git://127.0.0.1:{}/allowed-*\"]\n",
            server.port
        ),
    )
    .unwrap();
    std::fs::write(
        communities.path().join("closed.toml"),
        "name = \"Closed\"\n[build_your_own]\nenabled = false\n",
    )
    .unwrap();
    let service = in_process_communities(communities.path(), "kiln/scripted:built");
    let escaped = |name: &str| crate::support::service::escaped(&server.url(name));
    let status = |path: &str| {
        let (status, body) = service.request("GET", path, "Accept: text/event-stream\r\n", "");
        (status, body)
    };
    let (code, body) = status("/communities/lab/build/gh/org/repo/HEAD");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("does not build from gh"), "{body}");
    let (code, body) = status(&format!(
        "/communities/lab/build/git/{}/HEAD",
        escaped("other")
    ));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("does not build"), "{body}");
    let (code, body) = status(&format!(
        "/communities/closed/build/git/{}/HEAD",
        escaped("allowed-env")
    ));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("builds only its catalogue"), "{body}");
    let (code, _) = status("/communities/nobody/build/git/x/HEAD");
    assert_eq!(code, 404);
    let (events, raw) = service.events(&format!(
        "/communities/lab/build/git/{}/HEAD?build_only=true",
        escaped("allowed-env")
    ));
    assert_eq!(events.last().unwrap()["phase"], "ready", "{raw}");
    assert_eq!(
        *service.engine.pushed_to.lock().unwrap(),
        [Some("127.0.0.1:5999/lab-".to_string())],
        "the image goes under the community's prefix"
    );
    // The service's own route pushes where the service does (here: nowhere).
    let (events, raw) = service.events(&format!(
        "/build/git/{}/HEAD?build_only=true",
        escaped("other")
    ));
    assert_eq!(events.last().unwrap()["phase"], "ready", "{raw}");
    assert_eq!(service.engine.pushed_to.lock().unwrap()[1], None);
}

/// A community's `sessions` quota counts the sessions of images under its prefix launched through
/// it (in-process, a scripted engine whose "image" is under the prefix, local sessions).
#[test]
fn a_communitys_sessions_quota_refuses_the_launch_beyond_it() {
    let server = GitServer::start();
    server.commit("allowed-a", &[("README.md", "a\n")], "a");
    server.commit("allowed-b", &[("README.md", "b\n")], "b");
    let communities = tempfile::tempdir().unwrap();
    std::fs::write(
        communities.path().join("lab.toml"),
        "name = \"Lab\"\nregistry_prefix = \"127.0.0.1:5999/lab-\"\n[quotas]\nsessions = 1\n",
    )
    .unwrap();
    let service = in_process_communities(communities.path(), "127.0.0.1:5999/lab-scripted:built");
    let launch = |name: &str| {
        service.events(&format!(
            "/communities/lab/build/git/{}/HEAD",
            crate::support::service::escaped(&server.url(name))
        ))
    };
    let (events, raw) = launch("allowed-a");
    assert_eq!(events.last().unwrap()["phase"], "ready", "{raw}");
    let (events, raw) = launch("allowed-b");
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "failed", "{raw}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("quotas.sessions = 1"),
        "{raw}"
    );
}

/// A workshop's pre-warm: every image the spawn form offers is pulled onto the service's engine
/// (in-process: the scripted engine records the pulls; the entry is built on first load).
#[test]
fn a_communitys_prewarm_pulls_every_offered_image() {
    let server = GitServer::start();
    server.commit("warm", &[("README.md", "one\n")], "one");
    let communities = tempfile::tempdir().unwrap();
    scheduled_community(communities.path(), &server.url("warm"));
    let (_now, clock) = test_clock(MONDAY_0300 - 3600);
    let service = in_process_with(clock, communities.path(), None, 0);
    wait_for("the first load's check", 30, || {
        !last_check(&service.http).is_null()
    });
    let (_, catalog) = service.json("GET", "/api/communities/lab/catalog", None);
    let offered = catalog["entries"][0]["versions"][0]["image"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, answer) = request_as(
        &service.http,
        "POST",
        "/api/communities/lab/prewarm",
        None,
        None,
    );
    assert_eq!(status, 403, "for admins only: {answer}");
    let (status, answer) = request_as(
        &service.http,
        "POST",
        "/api/communities/lab/prewarm",
        Some(OPERATOR),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(
        *service.engine.pulled.lock().unwrap(),
        [(offered, false)],
        "the offered image, without credentials (no registry)"
    );
}

/// A community with a hub of its own (`[hub]`): a launch through its route starts there, as a
/// temporary user of that hub whose session opens through that hub's proxy, and the user goes
/// when the hub stops the server; the service itself has no hub (it would launch on its engine).
/// A community whose hub token the operator has not set fails before anything is built.
#[test]
fn a_community_with_its_own_hub_launches_its_sessions_there() {
    require_engine();
    let git = GitServer::start();
    git.example("python-default", "own-hub");
    let hub = crate::support::jupyterhub::JupyterHubServer::start();
    let communities = tempfile::tempdir().unwrap();
    for id in ["lab", "tokenless"] {
        std::fs::write(
            communities.path().join(format!("{id}.toml")),
            format!("name = \"{id}\"\n\n[hub]\nurl = \"{}\"\n", hub.url()),
        )
        .unwrap();
    }
    let service = serve_communities(
        communities.path(),
        &[
            ("KILN_COMMUNITY_LAB_HUB_TOKEN", &hub.token),
            ("KILN_HUB_REAP_SECONDS", "1"),
        ],
    );
    let spec = crate::support::service::escaped(&git.url("own-hub"));

    let (events, raw) = service.events(&format!("/communities/tokenless/build/git/{spec}/HEAD"));
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "failed", "{raw}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("set KILN_COMMUNITY_TOKENLESS_HUB_TOKEN"),
        "{raw}"
    );
    assert_eq!(service.builds_started(), 0, "nothing built for it");

    let (events, raw) = service.events(&format!("/communities/lab/build/git/{spec}/HEAD"));
    let ready = events.last().unwrap();
    assert_eq!(ready["phase"], "ready", "{raw}");
    let (url, token) = (
        ready["url"].as_str().unwrap(),
        ready["token"].as_str().unwrap(),
    );
    assert!(url.starts_with(&format!("{}user/", hub.url())), "{url}");
    let path = &url[hub.url().len() - 1..];
    let (status, body) = hub.http("GET", &format!("{path}api/status?token={token}"), "", "");
    assert_eq!(status, 200, "{body}");
    let users = hub.users();
    assert_eq!(users.len(), 1, "{users:?}");
    let (_, model) = hub.api("GET", &format!("users/{}", users[0]), None);
    assert_eq!(
        model["servers"][""]["user_options"]["image"], ready["image"],
        "{model}"
    );

    // The hub stops the server (as its culler would): kiln's reaper for that hub deletes the user.
    let (status, _) = hub.api("DELETE", &format!("users/{}/server", users[0]), None);
    assert!(status == 202 || status == 204, "{status}");
    hub.wait_until(30, "the temporary user was not deleted", |h| {
        h.users().is_empty()
    });
    crate::support::remove_image(ready["image"].as_str().unwrap());
}

/// One request to the service with the `Host` a browser would send: status and whole answer.
fn request_to_host(port: u16, host: &str, path: &str, headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// A community named by its host (`hosts`): `build/...` and `profiles` on that host are the
/// community's routes (its policy, its prefix), while the same paths on the service's own host
/// stay the service's (in-process, a scripted engine, a real git server).
#[test]
fn a_community_named_by_its_host_gets_its_own_build_route_and_profiles() {
    let server = GitServer::start();
    server.commit("by-host", &[("README.md", "one\n")], "one");
    let communities = tempfile::tempdir().unwrap();
    std::fs::write(
        communities.path().join("physics.toml"),
        "name = \"Physics\"\nhosts = [\"physics.kiln.test\"]\nregistry_prefix = \"127.0.0.1:5999/physics-\"\n[build_your_own]\nproviders = [\"git\"]\n",
    )
    .unwrap();
    let service = in_process_communities(communities.path(), "kiln/scripted:built");
    let port = service.http.port;
    let sse = "Accept: text/event-stream\r\n";
    // The community's policy holds on its host: it builds from git only.
    let (status, answer) = request_to_host(
        port,
        "Physics.Kiln.Test:443",
        "/build/gh/org/repo/HEAD",
        sse,
    );
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer.contains("community physics does not build from gh"),
        "{answer}"
    );
    let (status, answer) = request_to_host(port, "physics.kiln.test", "/profiles", "");
    assert_eq!(status, 200, "{answer}");
    assert!(answer.ends_with("[]"), "no entry yet: {answer}");
    // Another host: the service's own routes (no profiles of its own; gh is not refused).
    let (status, _) = request_to_host(port, "kiln.test", "/profiles", "");
    assert_eq!(status, 404);
    let (status, answer) = request_to_host(port, "kiln.test", "/build/gh/org/repo/HEAD", sse);
    assert_eq!(status, 200, "{answer}");
    assert!(!answer.contains("does not build from gh"), "{answer}");
    // A build on the community's host goes under its prefix.
    let spec = crate::support::service::escaped(&server.url("by-host"));
    let (status, answer) = request_to_host(
        port,
        "physics.kiln.test",
        &format!("/build/git/{spec}/HEAD?build_only=true"),
        sse,
    );
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"phase\":\"ready\""), "{answer}");
    assert_eq!(
        service.engine.pushed_to.lock().unwrap().last().cloned(),
        Some(Some("127.0.0.1:5999/physics-".to_string()))
    );
}

/// A copy of the fixture channel whose `noarch` repodata lists only the packages `keep` admits
/// (the package files are links to the fixture's; no sharded or compressed repodata, so a client
/// reads the JSON the test writes).
/// An operator's check of `entry` in the community `lab`, waited for: its report.
fn check_lab_entry(service: &Service, entry: &str) -> Value {
    let (status, report) = request_as(
        &service.http,
        "POST",
        &format!("/api/communities/lab/entries/{entry}/check?wait=true"),
        Some(OPERATOR),
        None,
    );
    assert_eq!(status, 200, "{report}");
    report
}

/// The `__version__` of `module` in `image`.
fn module_version(image: &str, module: &str) -> String {
    let code = format!("import {module}; print({module}.__version__)");
    crate::support::in_image(image, &["python", "-c", &code])
        .trim()
        .to_string()
}

fn channel_copy(dir: &std::path::Path, keep: impl Fn(&str) -> bool) {
    let fixture = crate::support::conda::channel_dir();
    let noarch = dir.join("noarch");
    std::fs::create_dir_all(&noarch).unwrap();
    if !dir.join("linux-64").exists() {
        std::os::unix::fs::symlink(fixture.join("linux-64"), dir.join("linux-64")).unwrap();
        for file in std::fs::read_dir(fixture.join("noarch")).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|x| x == "conda" || x == "bz2") {
                std::os::unix::fs::symlink(&path, noarch.join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    let text = std::fs::read_to_string(fixture.join("noarch/repodata.json")).unwrap();
    let mut repodata: Value = serde_json::from_str(&text).unwrap();
    for table in ["packages", "packages.conda"] {
        if let Some(packages) = repodata[table].as_object_mut() {
            packages.retain(|file, _| keep(file));
        }
    }
    std::fs::write(noarch.join("repodata.json"), repodata.to_string()).unwrap();
}

/// `rebuild.lock_change`: a check re-solves the entry's environment.yml (unpinned `kiln-greet`)
/// without building; the same lock builds nothing, and once the channel (a loopback server of
/// fixture packages standing in for conda-forge) offers kiln-greet 0.2.0, the check builds a
/// version whose image has it, though the repository did not change.
#[test]
fn a_conda_entry_is_rebuilt_when_re_solving_gives_another_lock() {
    require_engine();
    let channel_dir = tempfile::tempdir().unwrap();
    channel_copy(channel_dir.path(), |file| {
        !file.starts_with("kiln-greet-0.2.0")
    });
    let channel = crate::support::conda::ChannelServer::serve_uncached(channel_dir.path());
    let git = GitServer::start();
    git.commit(
        "relock",
        &[(
            "environment.yml",
            "channels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip\n  - kiln-greet\n  - kiln-hello\n",
        )],
        "an environment with an unpinned package",
    );
    let communities = tempfile::tempdir().unwrap();
    std::fs::write(
        communities.path().join("lab.toml"),
        format!(
            "name = \"Lab\"\n\n[[entry]]\nslug = \"conda\"\nname = \"Conda\"\nsource = \"{}\"\nref = \"main\"\nsmoke = [\"python\", \"-c\", \"import kiln_greet\"]\nrebuild = {{ lock_change = true }}\n",
            git.url("relock")
        ),
    )
    .unwrap();
    let service = serve_communities(
        communities.path(),
        &[
            (
                "KILN_CONDA_MIRRORS",
                &format!("conda-forge={}", channel.url()),
            ),
            ("KILN_CONDA_CACHE", channel.cache_dir().to_str().unwrap()),
        ],
    );
    let catalog = wait_for_checks(&service, "lab", 1);
    let first = &entry(&catalog, "conda")["versions"][0];
    assert_eq!(first["state"], "promoted", "{catalog:#}");
    let greet = |image: &str| module_version(image, "kiln_greet");
    assert_eq!(greet(first["image"].as_str().unwrap()), "0.1.0");

    let check = || check_lab_entry(&service, "conda");
    let report = check();
    assert_eq!(report["outcome"], "nothing", "{report}");
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("re-solving the environment gives version 1's lock again"),
        "{report}"
    );

    // The channel now offers kiln-greet 0.2.0: the same commit re-solves to another lock.
    channel_copy(channel_dir.path(), |_| true);
    let report = check();
    assert_eq!(report["outcome"], "built", "{report}");
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("re-solving the environment gives another lock than version 1's"),
        "{report}"
    );
    let second = &report["version"];
    assert_eq!(second["number"], 2, "{report}");
    assert_eq!(second["state"], "promoted", "{report}");
    assert_eq!(
        second["commit"], first["commit"],
        "the repository did not change"
    );
    assert_eq!(greet(second["image"].as_str().unwrap()), "0.2.0");
    for version in [first, second] {
        crate::conda_build::remove_with_conda(version["image"].as_str().unwrap());
    }
}

/// `rebuild.lock_change` for pip: the entry's requirements.txt names `kiln-test-relock` without
/// a version, from a package index on loopback (standing in for PyPI; Jupyter's projects pass
/// through to PyPI). A check builds the commit again with a new refresh and compares the packages
/// it installs: the same ones build nothing; once the index offers 0.2.0, the check builds version
/// 2 with it, though the repository did not change; and the next commit keeps 0.2.0 (its build
/// keeps the refresh instead of reusing version 1's environment). The checks' own images go.
#[test]
fn a_pip_entry_is_rebuilt_when_its_requirements_resolve_to_other_packages() {
    require_engine();
    let index = crate::support::package_index::PackageIndex::mirror_of_pypi();
    index.publish("kiln-test-relock", "0.1.0");
    let git = GitServer::start();
    git.commit(
        "pip-relock",
        &[("requirements.txt", "kiln-test-relock\n")],
        "a requirement without a version",
    );
    let communities = tempfile::tempdir().unwrap();
    std::fs::write(
        communities.path().join("lab.toml"),
        format!(
            "name = \"Lab\"\n\n[[entry]]\nslug = \"pip\"\nname = \"Pip\"\nsource = \"{}\"\nref = \"main\"\nsmoke = [\"python\", \"-c\", \"import kiln_test_relock\"]\nrebuild = {{ lock_change = true }}\n",
            git.url("pip-relock")
        ),
    )
    .unwrap();
    let index_url = index.url();
    let service = serve_communities(
        communities.path(),
        &[("KILN_PYPI_MIRROR", index_url.as_str())],
    );
    let catalog = wait_for_checks(&service, "lab", 1);
    let first = &entry(&catalog, "pip")["versions"][0];
    assert_eq!(first["state"], "promoted", "{catalog:#}");
    let installed = |image: &str| module_version(image, "kiln_test_relock");
    assert_eq!(installed(first["image"].as_str().unwrap()), "0.1.0");
    let check = || check_lab_entry(&service, "pip");
    let message = |report: &Value| report["message"].as_str().unwrap().to_string();
    let relock_images = || {
        let out = crate::support::docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|i| i.starts_with("kiln/relock-lab-pip:"))
            .count()
    };

    let report = check();
    assert_eq!(report["outcome"], "nothing", "{report}");
    assert!(
        message(&report).contains("installs version 1's packages again"),
        "{report}"
    );
    assert_eq!(relock_images(), 0, "the check's image is removed");

    // The index now offers 0.2.0: the same commit installs another version.
    index.publish("kiln-test-relock", "0.2.0");
    let report = check();
    assert_eq!(report["outcome"], "built", "{report}");
    assert!(
        message(&report).contains(
            "installs other packages than version 1's: python kiln-test-relock 0.1.0 -> 0.2.0"
        ),
        "{report}"
    );
    let second = &report["version"];
    assert_eq!(second["number"], 2, "{report}");
    assert_eq!(second["state"], "promoted", "{report}");
    assert_eq!(
        second["commit"], first["commit"],
        "the repository did not change"
    );
    assert!(second["refresh"].is_string(), "{report}");
    assert_eq!(installed(second["image"].as_str().unwrap()), "0.2.0");
    assert_eq!(relock_images(), 0, "the check's image is removed");

    // A code-only commit: built on version 2's packages, not on version 1's environment.
    git.commit(
        "pip-relock",
        &[("README.md", "now with a README\n")],
        "a code-only change",
    );
    let report = check();
    assert_eq!(report["outcome"], "built", "{report}");
    let third = &report["version"];
    assert_eq!(third["number"], 3, "{report}");
    assert_ne!(third["commit"], second["commit"]);
    assert_eq!(third["refresh"], second["refresh"], "{report}");
    assert_eq!(installed(third["image"].as_str().unwrap()), "0.2.0");
    for version in [first, second, third] {
        crate::support::remove_image(version["image"].as_str().unwrap());
    }
}

/// `[retention] schedule`: the service deletes on its own, when the schedule is due (every
/// minute here, on the real clock), the images no version keeps: a broken version's image goes
/// from the registry, the offered one stays, and the run is shown in the catalogue.
#[test]
fn a_communitys_retention_runs_on_its_schedule_and_deletes_only_what_nobody_keeps() {
    require_engine();
    let registry = Registry::start(None);
    let server = GitServer::start();
    server.example("python-default", "retained");
    let communities = tempfile::tempdir().unwrap();
    std::fs::write(
        communities.path().join("tidy.toml"),
        format!(
            "name = \"Tidy\"\nregistry_prefix = \"{}/tidy-\"\n\n[retention]\nschedule = \"* * * * *\"\n\n[[entry]]\nslug = \"python\"\nname = \"Py\"\nsource = \"{repo}\"\nref = \"main\"\n\n[[entry]]\nslug = \"broken\"\nname = \"Broken\"\nsource = \"{repo}\"\nref = \"main\"\nsmoke = [\"false\"]\n",
            registry.host(),
            repo = server.url("retained")
        ),
    )
    .unwrap();
    let service = serve_communities(communities.path(), &[]);
    let catalog = wait_for_checks(&service, "tidy", 2);
    assert_eq!(catalog["retention"]["schedule"], "* * * * *");
    let tag = |slug: &str| {
        entry(&catalog, slug)["versions"][0]["tag"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (broken, offered) = (tag("broken"), tag("python"));
    assert!(registry.digest(&broken, None).is_some());
    // A run that came before the broken version existed deleted nothing; the next one deletes it.
    let deadline = Instant::now() + Duration::from_secs(150);
    let run = loop {
        let (_, catalog) = service.json("GET", "/api/communities/tidy/catalog", None);
        let run = catalog["retention"]["last_run"].clone();
        if run["result"]
            .as_str()
            .is_some_and(|r| r.contains("deleted 1 image nobody keeps"))
        {
            break run;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled retention: {catalog:#}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(run["error"].is_null(), "{run}");
    assert!(
        registry.digest(&broken, None).is_none(),
        "the broken version's image is gone"
    );
    assert!(
        registry.digest(&offered, None).is_some(),
        "the offered version stays"
    );
    let (_, catalog) = service.json("GET", "/api/communities/tidy/catalog", None);
    assert!(
        !entry(&catalog, "broken")["versions"][0]["deleted"].is_null(),
        "{catalog:#}"
    );
}
