//! Archived records as sources: a Zenodo DOI resolved through a DOI resolver and fetched from an
//! InvenioRDM installation, both on loopback (tests/services/records.py stands in for doi.org and
//! zenodo.org, which this machine cannot reach). The record's zip is unpacked and built, the same
//! record is built once, a new version shares the environment; and every fault a stranger's record
//! can bring fails with a clear message and builds nothing.

use crate::support::records::RecordServer;
use crate::support::*;

/// The python-requirements example, as the single folder at the top of a zip (GitHub's release
/// archives, which Zenodo keeps, look like this).
fn example_tree(top: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let dir = examples().join("python-requirements");
    let mut tree: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                format!("{top}/{}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    tree.extend(
        extra
            .iter()
            .map(|(p, t)| (format!("{top}/{p}"), t.to_string())),
    );
    tree
}

fn as_refs(tree: &[(String, String)]) -> Vec<(&str, &str)> {
    tree.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect()
}

const SITE: &str = r#"{
  "dois": {"10.5281/zenodo.123": "http://127.0.0.1:PORT/records/123",
           "10.5281/zenodo.124": "http://127.0.0.1:PORT/records/124",
           "10.5281/zenodo.223": "http://127.0.0.1:PORT/records/223",
           "10.6084/m9.figshare.42": "http://127.0.0.1:PORT/articles/code/analysis/42",
           "10.1000/elsewhere": "http://127.0.0.1:1/records/9"},
  "records": {
    "123": {"files": [{"key": "analysis-v1.zip", "path": "files/v1.zip"}]},
    "124": {"files": [{"key": "analysis-v2.zip", "path": "files/v2.zip"}]},
    "223": {"files": [{"key": "analysis-v1.zip", "path": "files/v1.zip"}]},
    "404": {"status": 404},
    "410": {"status": 410},
    "403": {"status": 200, "files_status": 403, "files": []},
    "503": {"status": 503},
    "bad-md5": {"files": [{"key": "a.txt", "path": "files/a.txt", "md5": "00000000000000000000000000000000"}]},
    "slip": {"files": [{"key": "slip.zip", "path": "files/slip.zip"}]},
    "bomb": {"files": [{"key": "bomb.zip", "path": "files/bomb.zip"}]}
  }
}"#;

fn build(server: &RecordServer, spec: &str, extra: &[&str]) -> (bool, Vec<serde_json::Value>) {
    let out = server
        .kiln()
        .args(["build", spec, "--json-logs"])
        .args(extra)
        .output()
        .unwrap();
    (out.status.success(), events(&out.stdout))
}

/// The service, fetching records from `server` and allowed to reach it (only it: its port).
fn start_service(
    server: &RecordServer,
    state: &tempfile::TempDir,
) -> crate::support::service::Service {
    let allowed = format!("127.0.0.1:{}", server.port);
    let mut env: Vec<(&str, String)> = server.env();
    env.push(("KILN_ALLOWED_HOSTS", allowed));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    crate::support::service::Service::start_with(&state.path().join("state.db"), &env)
}

/// The image the last (`built`) event names.
fn image_of(events: &[serde_json::Value]) -> String {
    events.last().unwrap()["imageName"]
        .as_str()
        .unwrap()
        .to_string()
}

fn label(image: &str, name: &str) -> String {
    let out = docker(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels {name:?}}}}}"),
        image,
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_zenodo_doi_builds_its_records_archive_once_and_a_new_version_shares_the_environment() {
    require_engine();
    let server = RecordServer::start(SITE);
    server.zip("v1.zip", &as_refs(&example_tree("analysis-1.0", &[])));
    server.zip(
        "v2.zip",
        &as_refs(&example_tree("analysis-2.0", &[("NEWS.md", "version 2\n")])),
    );

    let (ok, events) = build(&server, "zenodo:10.5281/zenodo.123", &[]);
    let last = events.last().unwrap();
    assert!(ok, "{}", messages(&events));
    assert_eq!(last["phase"], "built", "{last}");
    let image = last["imageName"].as_str().unwrap().to_string();
    assert_eq!(image, "kiln/zenodo-123:123");
    let text = messages(&events);
    assert!(text.contains("Resolved to record 123 (1 files)"), "{text}");
    assert!(text.contains("Unpacking analysis-v1.zip"), "{text}");
    // The archive's single top folder is the repository: its files are at the top.
    assert_verify(&image);
    assert_eq!(label(&image, "org.opencontainers.image.revision"), "123");
    let landing = format!("http://127.0.0.1:{}/records/123", server.port);
    assert_eq!(label(&image, "org.opencontainers.image.source"), landing);
    assert_eq!(
        label(&image, "org.opencontainers.image.created"),
        "2024-05-06T07:08:09Z"
    );

    // `kiln plan` fetches the record, then plans it.
    let plan = server
        .kiln()
        .args(["plan", "--json", "zenodo:10.5281/zenodo.123"])
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["buildpacks"][0]["name"], "python", "{plan}");

    // The same record, named by its landing URL: reused before any download (the build and the
    // plan above each downloaded the archive once).
    let downloads = server.requests(200, "/api/records/123/files/");
    assert_eq!(downloads, 2);
    let (ok, events) = build(&server, &format!("zenodo:{landing}"), &[]);
    assert!(ok, "{}", messages(&events));
    let text = messages(&events);
    assert!(text.contains("Reusing kiln/zenodo-123:123"), "{text}");
    assert_eq!(server.requests(200, "/api/records/123/files/"), downloads);

    // A new version of the record: a new image, the same environment.
    let (ok, events) = build(&server, "doi:10.5281/zenodo.124", &[]);
    assert!(ok, "{}", messages(&events));
    let second = image_of(&events);
    assert_eq!(second, "kiln/zenodo-124:124");
    assert_eq!(
        label(&image, "io.kiln.environment-key"),
        label(&second, "io.kiln.environment-key")
    );
    assert!(
        in_image(&second, &["cat", "NEWS.md"]).contains("version 2"),
        "the new version's files"
    );
    remove_image(&image);
    remove_image(&second);
}

/// Each way a record can fail: a `failed` event with a clear message, nothing built.
#[test]
fn a_records_faults_fail_with_a_clear_message_and_build_nothing() {
    require_engine();
    let server = RecordServer::start(SITE);
    server.file("a.txt", b"some data\n");
    server.zip("slip.zip", &[("../../outside.txt", "escaped\n")]);
    let zeros = "0".repeat(1 << 20);
    server.zip("bomb.zip", &[("big.txt", zeros.as_str())]);
    let url = |id: &str| format!("zenodo:http://127.0.0.1:{}/records/{id}", server.port);
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        (
            "doi:10.9999/unknown".into(),
            vec![],
            "the DOI resolver does not know this DOI",
        ),
        (
            "doi:10.1000/elsewhere".into(),
            vec![],
            "is not a record of a repository kiln fetches from",
        ),
        (
            "zenodo:10.6084/m9.figshare.42".into(),
            vec![],
            "is a figshare record, not a zenodo one",
        ),
        (url("404"), vec![], "record 404 does not exist (404)"),
        (
            url("410"),
            vec![],
            "record 410 was withdrawn or deleted (410 Gone)",
        ),
        (url("403"), vec![], "restricted or embargoed"),
        (
            url("503"),
            vec![],
            "the server answered 503 Service Unavailable 3 times",
        ),
        (
            url("bad-md5"),
            vec![],
            "a.txt does not match the checksum the record lists",
        ),
        (
            url("slip"),
            vec![],
            "would land outside the folder it is unpacked into",
        ),
        (
            url("bomb"),
            vec!["--max-repo-bytes", "100000"],
            "larger than the limit of 100000 bytes",
        ),
    ];
    for (spec, extra, expected) in cases {
        let (ok, events) = build(&server, &spec, &extra);
        let last = events.last().unwrap_or_else(|| panic!("{spec}: no events"));
        assert!(!ok, "{spec}: {last}");
        assert_eq!(last["phase"], "failed", "{spec}: {last}");
        let message = last["message"].as_str().unwrap();
        assert!(message.contains(expected), "{spec}: {message}");
        assert!(
            !messages(&events).contains("[building]")
                && !events.iter().any(|e| e["phase"] == "building"),
            "{spec}: the engine was asked to build"
        );
    }
    assert!(
        !server.path().join("outside.txt").exists()
            && !server.path().parent().unwrap().join("outside.txt").exists()
    );
}

/// A server that answers 503 twice, then properly: kiln tries again and builds.
#[test]
fn a_record_server_that_fails_twice_is_tried_again() {
    require_engine();
    let site = SITE.replacen('{', "{\"fail_first\": 2,", 1);
    let server = RecordServer::start(&site);
    server.zip("v1.zip", &as_refs(&example_tree("analysis-1.0", &[])));
    let image = format!("kiln-test/{}:1", unique("record-retry"));
    let (ok, events) = build(
        &server,
        "zenodo:10.5281/zenodo.123",
        &["--image-name", &image],
    );
    assert!(ok, "{}", messages(&events));
    assert_eq!(server.requests(503, "/api/handles/"), 2);
    remove_image(&image);
}

/// BinderHub's `/build/zenodo/<DOI>` (a mybinder.org badge's link): the record is resolved,
/// fetched, built and launched by the service, with BinderHub's phases.
#[test]
fn the_service_builds_and_launches_a_zenodo_doi() {
    require_engine();
    let server = RecordServer::start(SITE);
    server.zip("v1.zip", &as_refs(&example_tree("analysis-1.0", &[])));
    let state = tempfile::tempdir().unwrap();
    let service = start_service(&server, &state);
    // The badge's link: the launch page, which then reads /build/zenodo/<DOI>.
    let (status, page) = service.get("/v2/zenodo/10.5281/zenodo.223", None);
    assert_eq!(status, 200, "{page}");
    let (events, raw) = service.events("/build/zenodo/10.5281/zenodo.223");
    let phases: Vec<&str> = events
        .iter()
        .map(|e| e["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases.last(), Some(&"ready"), "{phases:?} {raw}");
    let ready = events.last().unwrap();
    assert_eq!(ready["binder_request"], "v2/zenodo/10.5281/zenodo.223");
    let image = ready["image"].as_str().unwrap().to_string();
    assert!(image.contains("zenodo-223:223"), "{image}");
    let ids = docker(&["ps", "-aq", "--filter", &format!("ancestor={image}")]);
    for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
        docker(&["rm", "-f", id]);
    }
    remove_image(&image);
}

/// The service fetches only what its address policy allows: a record's file whose link redirects
/// to an address the operator did not allow (another loopback port here, a cloud metadata address
/// or a private network in production) is refused at that hop, and nothing is built.
#[test]
fn a_record_file_redirecting_to_a_private_address_is_refused() {
    require_engine();
    let site = SITE.replace(
        r#""404": {"status": 404},"#,
        r#""404": {"status": 404},
           "redir": {"files": [{"key": "a.txt", "path": "files/a.txt",
                                "url": "http://127.0.0.1:PORT/redirect?to=http://127.0.0.1:PRIVATE/a.txt"}]},"#,
    );
    let private = free_port();
    let server = RecordServer::start(&site.replace("PRIVATE", &private.to_string()));
    server.file("a.txt", b"some data\n");
    let private_server = std::net::TcpListener::bind(("127.0.0.1", private)).unwrap();
    private_server.set_nonblocking(true).unwrap();
    let state = tempfile::tempdir().unwrap();
    let service = start_service(&server, &state);
    let dois = format!(
        r#""dois": {{"10.5281/zenodo.7": "http://127.0.0.1:{}/records/redir","#,
        server.port
    );
    server.site(
        &site
            .replace("PRIVATE", &private.to_string())
            .replace(r#""dois": {"#, &dois),
    );
    let (events, raw) = service.events("/build/zenodo/10.5281/zenodo.7");
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "failed", "{raw}");
    let message = last["message"].as_str().unwrap();
    assert!(message.contains("kiln does not fetch"), "{message}");
    assert!(message.contains(&private.to_string()), "{message}");
    assert!(
        private_server.accept().is_err(),
        "the private address was connected to"
    );
}

/// Figshare: a DOI without a version builds the article's newest version, a landing URL with one
/// builds that version; link-only files are left out; each version is its own image.
#[test]
fn a_figshare_article_builds_its_newest_or_named_version() {
    require_engine();
    let server = RecordServer::start(
        r#"{"dois": {"10.6084/m9.figshare.42": "http://127.0.0.1:PORT/articles/code/analysis/42"},
            "records": {},
            "figshare": {"42": {"versions": {
              "1": {"files": [{"name": "requirements.txt", "path": "files/requirements.txt"},
                              {"name": "verify", "path": "files/verify"}]},
              "2": {"files": [{"name": "requirements.txt", "path": "files/requirements.txt"},
                              {"name": "verify", "path": "files/verify"},
                              {"name": "NEWS.md", "path": "files/news"},
                              {"name": "elsewhere.csv", "path": "files/news", "link_only": true}]}}}}}"#,
    );
    for name in ["requirements.txt", "verify"] {
        let text = std::fs::read(examples().join("python-requirements").join(name)).unwrap();
        server.file(name, &text);
    }
    server.file("news", b"version 2\n");
    let (ok, events) = build(&server, "doi:10.6084/m9.figshare.42", &[]);
    assert!(ok, "{}", messages(&events));
    let newest = image_of(&events);
    assert_eq!(newest, "kiln/figshare-42:42.v2");
    let text = messages(&events);
    assert!(
        text.contains("Resolved to record 42.v2 (3 files)"),
        "{text}"
    );
    in_image(&newest, &["sh", "./verify"]);
    assert!(in_image(&newest, &["cat", "NEWS.md"]).contains("version 2"));
    assert_eq!(server.requests(200, "elsewhere.csv"), 0, "a link-only file");
    let landing = format!(
        "doi:http://127.0.0.1:{}/articles/code/analysis/42/1",
        server.port
    );
    let (ok, events) = build(&server, &landing, &[]);
    assert!(ok, "{}", messages(&events));
    let first = image_of(&events);
    assert_eq!(first, "kiln/figshare-42:42.v1");
    let listing = in_image(&first, &["ls"]);
    assert!(!listing.contains("NEWS.md"), "{listing}");
    remove_image(&newest);
    remove_image(&first);
}

/// Dataverse: the dataset's latest version, its files in their folders (here the environment is
/// in `binder/`); a restricted file fails the build before anything is downloaded.
#[test]
fn a_dataverse_dataset_builds_with_its_folders_and_a_restricted_file_is_refused() {
    require_engine();
    let server = RecordServer::start(
        r#"{"dois": {"10.7910/DVN/ABC": "http://127.0.0.1:PORT/citation?persistentId=doi:10.7910/DVN/ABC",
                     "10.7910/DVN/LOCKED": "http://127.0.0.1:PORT/dataset.xhtml?persistentId=doi:10.7910/DVN/LOCKED"},
            "records": {},
            "dataverse": {
              "doi:10.7910/DVN/ABC": {"major": 2, "minor": 1, "files": [
                {"label": "requirements.txt", "directory": "binder", "path": "files/requirements.txt"},
                {"label": "verify", "path": "files/verify"}]},
              "doi:10.7910/DVN/LOCKED": {"major": 1, "minor": 0, "files": [
                {"label": "secret.csv", "path": "files/verify", "restricted": true}]}}}"#,
    );
    for name in ["requirements.txt", "verify"] {
        let text = std::fs::read(examples().join("python-requirements").join(name)).unwrap();
        server.file(name, &text);
    }
    let (ok, events) = build(&server, "doi:10.7910/DVN/ABC", &[]);
    assert!(ok, "{}", messages(&events));
    let image = image_of(&events);
    assert_eq!(image, "kiln/dataverse-doi-10-7910-dvn-abc:v2.1");
    let text = messages(&events);
    assert!(text.contains("binder/requirements.txt"), "{text}");
    in_image(&image, &["sh", "./verify"]);
    assert!(
        label(&image, "org.opencontainers.image.source")
            .contains("persistentId=doi%3A10.7910%2FDVN%2FABC&version=2.1"),
        "{}",
        label(&image, "org.opencontainers.image.source")
    );
    let (ok, events) = build(&server, "doi:10.7910/DVN/LOCKED", &[]);
    let last = events.last().unwrap();
    assert!(!ok);
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("secret.csv is restricted or embargoed"),
        "{last}"
    );
    assert_eq!(server.requests(200, "/api/access/datafile/"), 2);
    remove_image(&image);
}

/// Software Heritage: a revision's SWHID is looked up for its directory, the vault is asked to
/// cook it (and polled while it does), and the bundle's tar.gz is unpacked and built; the
/// directory's hash names the image, so a SWHID of that directory reuses it.
#[test]
fn a_software_heritage_revision_builds_from_the_vaults_bundle() {
    require_engine();
    let dir = "1111111111111111111111111111111111111111";
    let rev = "2222222222222222222222222222222222222222";
    let server = RecordServer::start(&format!(
        r#"{{"dois": {{}}, "records": {{}},
            "swh": {{"revisions": {{"{rev}": "{dir}"}}, "dirs": {{"{dir}": "files/bundle.tar.gz"}}}}}}"#
    ));
    let tree = example_tree(&format!("swh:1:dir:{dir}"), &[]);
    server.tar_gz("bundle.tar.gz", &as_refs(&tree));
    let (ok, events) = build(
        &server,
        &format!("swh:1:rev:{rev};origin=https://example.org/x"),
        &[],
    );
    assert!(ok, "{}", messages(&events));
    let image = image_of(&events);
    assert_eq!(image, format!("kiln/swh-{dir}:{dir}"));
    let text = messages(&events);
    assert!(
        text.contains("The vault is making the bundle (pending: cooking)"),
        "{text}"
    );
    assert_verify(&image);
    let (ok, events) = build(&server, &format!("swh:1:dir:{dir}"), &[]);
    assert!(ok, "{}", messages(&events));
    assert!(
        messages(&events).contains("Reusing"),
        "{}",
        messages(&events)
    );
    remove_image(&image);
}

/// CKAN: a dataset's URL builds its current resources; a version named by its activity builds
/// the resources that version had; each is its own image.
#[test]
fn a_ckan_dataset_builds_its_current_or_named_version() {
    require_engine();
    let server = RecordServer::start(
        r#"{"dois": {}, "records": {},
            "ckan": {"sample": {"modified": "2024-02-03T04:05:06.123456",
              "resources": [{"name": "requirements.txt", "path": "files/requirements.txt"},
                            {"name": "verify", "path": "files/verify"},
                            {"name": "NEWS.md", "path": "files/news"}],
              "activities": {"a1b2": {"modified": "2023-01-02T03:04:05.000001",
                "resources": [{"name": "requirements.txt", "path": "files/requirements.txt"},
                              {"name": "verify", "path": "files/verify"}]}}}}}"#,
    );
    for name in ["requirements.txt", "verify"] {
        let text = std::fs::read(examples().join("python-requirements").join(name)).unwrap();
        server.file(name, &text);
    }
    server.file("news", b"current\n");
    let dataset = format!("http://127.0.0.1:{}/dataset/sample", server.port);
    let (ok, events) = build(&server, &format!("ckan:{dataset}"), &[]);
    assert!(ok, "{}", messages(&events));
    let current = image_of(&events);
    assert_eq!(current, "kiln/ckan-sample:sample.v1706933106");
    in_image(&current, &["sh", "./verify"]);
    assert!(in_image(&current, &["cat", "NEWS.md"]).contains("current"));
    let (ok, events) = build(&server, &format!("ckan:{dataset}/history/a1b2"), &[]);
    assert!(ok, "{}", messages(&events));
    let old = image_of(&events);
    assert_eq!(old, "kiln/ckan-sample:sample.v1672628645");
    assert!(!in_image(&old, &["ls"]).contains("NEWS.md"));
    remove_image(&current);
    remove_image(&old);
}

/// HydroShare: the resource's bag is asked for again while the server makes it (202), then
/// unpacked; its `data/contents` is the repository, the bag's manifests are left out.
#[test]
fn a_hydroshare_resource_builds_from_its_bags_contents() {
    require_engine();
    let id = "0123456789abcdef0123456789abcdef";
    let server = RecordServer::start(&format!(
        r#"{{"dois": {{"10.4211/hs.{id}": "http://127.0.0.1:PORT/resource/{id}/"}}, "records": {{}},
            "hydroshare": {{"{id}": {{"updated": "2020-06-07T08:09:10.000000Z", "bag": "files/bag.zip"}}}}}}"#
    ));
    let mut tree = example_tree(&format!("{id}/data/contents"), &[]);
    tree.push((format!("{id}/bagit.txt"), "BagIt-Version: 0.96\n".into()));
    tree.push((
        format!("{id}/manifest-md5.txt"),
        "0 data/contents/verify\n".into(),
    ));
    server.zip("bag.zip", &as_refs(&tree));
    let (ok, events) = build(&server, &format!("doi:10.4211/hs.{id}"), &[]);
    assert!(ok, "{}", messages(&events));
    let image = image_of(&events);
    assert_eq!(image, format!("kiln/hydroshare-{id}:{id}.v1591517350"));
    let text = messages(&events);
    assert!(
        text.contains("is being prepared by the server; asking again"),
        "{text}"
    );
    assert_verify(&image);
    let listing = in_image(&image, &["ls"]);
    assert!(
        !listing.contains("bagit.txt") && !listing.contains("data"),
        "{listing}"
    );
    remove_image(&image);
}

/// The JSON API builds records as it builds repositories: `POST /api/builds` with a record
/// provider and a DOI; the same record asked for again is reused, not built again.
#[test]
fn the_json_api_builds_a_figshare_doi_once() {
    require_engine();
    let server = RecordServer::start(
        r#"{"dois": {"10.6084/m9.figshare.77": "http://127.0.0.1:PORT/articles/dataset/x/77/3"},
            "records": {},
            "figshare": {"77": {"versions": {"3": {"files": [
              {"name": "requirements.txt", "path": "files/requirements.txt"},
              {"name": "verify", "path": "files/verify"}]}}}}}"#,
    );
    for name in ["requirements.txt", "verify"] {
        let text = std::fs::read(examples().join("python-requirements").join(name)).unwrap();
        server.file(name, &text);
    }
    let state = tempfile::tempdir().unwrap();
    let service = start_service(&server, &state);
    let build = || {
        let (status, started) = service.json(
            "POST",
            "/api/builds",
            Some(serde_json::json!({"provider": "figshare", "spec": "10.6084/m9.figshare.77"})),
        );
        assert_eq!(status, 202, "{started}");
        let id = started["id"].as_str().unwrap().to_string();
        let events = service.api_events(&id, None);
        let last = events.last().unwrap().1.clone();
        assert_eq!(last["phase"], "built", "{last}");
        (
            last,
            messages(&events.into_iter().map(|(_, e)| e).collect::<Vec<_>>()),
        )
    };
    let (first, _) = build();
    let image = first["imageName"].as_str().unwrap().to_string();
    assert!(image.ends_with("figshare-77:77.v3"), "{image}");
    let (second, text) = build();
    assert_eq!(second["imageName"], first["imageName"]);
    assert!(text.contains("Reusing"), "{text}");
    assert_eq!(server.requests(200, "/figshare-files/77/3/verify"), 1);
    remove_image(&image);
}
