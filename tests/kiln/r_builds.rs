//! R built for real: each R form (`install.R`, `DESCRIPTION`, a dated `runtime.txt`) built from a
//! git server on loopback against a CRAN-like repository on loopback (tests/services/cran.py: it
//! stands in for CRAN and Posit Package Manager's dated snapshots, which this machine cannot
//! reach), each image's IR kernel running R code through jupyter_client inside it, a failed install
//! failing the build, a session launched with the R kernel, and the package cache a repository's
//! builds share (and nobody else's do).

use crate::examples_build::build_and_verify_with;
use crate::support::cran::CranRepo;
use crate::support::*;

/// Run `code` in the image's IR kernel through jupyter_client (without network); its printed
/// output.
fn r_in_kernel(image: &str, code: &str) -> String {
    let script = format!(
        "from jupyter_client.manager import start_new_kernel\n\
         km, kc = start_new_kernel(kernel_name='ir', startup_timeout=60)\n\
         out = []\n\
         def hook(m):\n    if m['msg_type'] == 'stream': out.append(m['content']['text'])\n\
         reply = kc.execute_interactive({code:?}, timeout=60, output_hook=hook)\n\
         kc.stop_channels(); km.shutdown_kernel(now=True)\n\
         assert reply['content']['status'] == 'ok', reply['content']\n\
         print(''.join(out), end='')\n"
    );
    in_image(image, &["python", "-c", &script])
}

fn cran_env(cran: &CranRepo) -> [(&'static str, String); 1] {
    [("KILN_CRAN_URL", cran.url_template())]
}

#[test]
fn r_install_r_without_runtime_txt_builds_with_debian_r_from_the_latest_snapshot() {
    let cran = CranRepo::start(&["latest"]);
    build_and_verify_with("r-install-only", &cran_env(&cran), |image| {
        assert_eq!(
            r_in_kernel(image, "cat(tinypkg::tiny_hello(), R.version$minor)"),
            "hello from tinypkg 2.2"
        );
    });
    assert_eq!(
        cran.downloads("tinypkg_0.1.0.tar.gz"),
        1,
        "{:?}",
        cran.requests()
    );
}

#[test]
fn r_description_installs_its_dependencies_then_the_package_itself() {
    let cran = CranRepo::start(&["latest"]);
    build_and_verify_with("r-description", &cran_env(&cran), |image| {
        assert_eq!(
            r_in_kernel(image, "cat(kilnexample::hello())"),
            "hello from R"
        );
    });
    assert_eq!(
        cran.downloads("tinypkg_0.1.0.tar.gz"),
        1,
        "{:?}",
        cran.requests()
    );
}

/// `r-4.2-2023-01-01`: the packages come from that date's snapshot (the repository serves no
/// other), compiled C code included.
#[test]
fn r_runtime_txt_date_picks_the_dated_snapshot() {
    let cran = CranRepo::start(&["2023-01-01"]);
    build_and_verify_with("r-runtime-dated", &cran_env(&cran), |image| {
        assert_eq!(
            r_in_kernel(image, "cat(tinyc::add2(40, 2), tinydep::tiny_twice())"),
            "42 hello from tinypkg hello from tinypkg"
        );
    });
    for tarball in [
        "tinypkg_0.1.0.tar.gz",
        "tinydep_0.2.0.tar.gz",
        "tinyc_0.1.0.tar.gz",
    ] {
        assert_eq!(
            cran.downloads(tarball),
            1,
            "{tarball}: {:?}",
            cran.requests()
        );
    }
    let requests = cran.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.contains(" /cran/2023-01-01/src/contrib/")),
        "{requests:?}"
    );
}

/// Rscript exits 0 when `install.packages()` cannot find a package; kiln's build fails, with R's
/// words.
#[test]
fn a_failing_install_r_fails_the_build_with_rs_message() {
    require_engine();
    let cran = CranRepo::start(&["latest"]);
    let server = GitServer::start();
    server.commit(
        "r-fails",
        &[("install.R", "install.packages(\"notthere\")\n")],
        "an install.R that cannot succeed",
    );
    let image = format!("kiln-test/{}:1", unique("r-fails"));
    let out = kiln()
        .env("KILN_CRAN_URL", cran.url_template())
        .args(["build", &server.url("r-fails"), "--json-logs"])
        .args(["--image-name", &image])
        .output()
        .unwrap();
    let events = events(&out.stdout);
    let last = events.last().unwrap();
    assert!(!out.status.success(), "{last}");
    assert_eq!(last["phase"], "failed", "{last}");
    let text = messages(&events);
    assert!(text.contains("‘notthere’ is not available"), "{text}");
    assert!(text.contains("install.R"), "{text}");
    remove_image(&image);
}

/// `kiln run` on an R repository: JupyterLab offers the R kernel and starts it.
#[test]
fn an_r_session_offers_and_starts_the_r_kernel() {
    require_engine();
    let cran = CranRepo::start(&["2023-01-01"]);
    let server = GitServer::start();
    server.example("r-runtime-dated", "r-lab");
    let (mut child, _, port, token) = start_kiln_run(
        kiln()
            .env("KILN_CRAN_URL", cran.url_template())
            .args(["run", &server.url("r-lab")]),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while session_status(port, Some(&token)) != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the session did not start in 90 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let session = crate::support::service::Http { port };
    let auth = format!("Authorization: token {token}\r\nContent-Type: application/json\r\n");
    let json = |response: &str| -> serde_json::Value {
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap_or("null")).unwrap()
    };
    let (status, specs) = session.request("GET", "/api/kernelspecs", &auth, "");
    assert_eq!(status, 200, "{specs}");
    let specs = json(&specs);
    assert_eq!(
        specs["kernelspecs"]["ir"]["spec"]["language"], "R",
        "{specs}"
    );
    let (status, kernel) = session.request("POST", "/api/kernels", &auth, r#"{"name": "ir"}"#);
    assert_eq!(status, 201, "{kernel}");
    assert_eq!(json(&kernel)["name"], "ir", "{kernel}");
    // SIGTERM, as Ctrl-C: kiln removes the session's container.
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

/// A changed `install.R` is run again, but the packages that earlier builds of the repository
/// installed come from its cache: installed as binaries, not downloaded or compiled again.
#[test]
fn a_repositorys_next_build_installs_its_r_packages_from_its_cache() {
    require_engine();
    let cran = CranRepo::start(&["2023-01-01"]);
    let server = GitServer::start();
    server.example("r-runtime-dated", "r-cached");
    let build = |tag: &str| {
        let image = format!("kiln-test/{}:{tag}", unique("r-cached"));
        let out = kiln()
            .env("KILN_CRAN_URL", cran.url_template())
            .args(["build", &server.url("r-cached"), "--json-logs"])
            .args(["--image-name", &image])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", last_event(&out.stdout));
        (image, messages(&events(&out.stdout)))
    };
    let (first, text) = build("1");
    assert!(
        text.contains("installing *source* package ‘tinyc’"),
        "{text}"
    );
    server.commit(
        "r-cached",
        &[(
            "install.R",
            "install.packages(\"tinydep\")\ninstall.packages(\"tinyc\")\nmessage(\"changed\")\n",
        )],
        "change install.R",
    );
    let (second, text) = build("2");
    assert!(
        text.contains("kiln: 3 R packages kept from earlier builds of this repository"),
        "{text}"
    );
    assert!(
        text.contains("installing *binary* package ‘tinyc’"),
        "{text}"
    );
    assert_eq!(
        cran.downloads("tinyc_0.1.0.tar.gz"),
        1,
        "{:?}",
        cran.requests()
    );
    assert_verify(&second);
    remove_image(&first);
    remove_image(&second);
}

/// The cache is filled by the repository's own code (`install.R`), so it is kept per repository
/// and ref: another repository's `install.R`, or one on another ref of the same repository (a pull
/// request), finds none of its packages there and so cannot replace them with its own.
#[test]
fn another_repository_or_ref_cannot_read_or_poison_a_repositorys_r_cache() {
    require_engine();
    let cran = CranRepo::start(&["latest"]);
    let server = GitServer::start();
    server.example("r-install-only", "victim");
    let build = |name: &str, reference: Option<&str>| {
        let image = format!("kiln-test/{}:1", unique(name));
        let out = kiln()
            .env("KILN_CRAN_URL", cran.url_template())
            .args(["build", &server.url(name), "--json-logs"])
            .args(["--image-name", &image])
            .args(reference.map(|r| ["--ref", r]).into_iter().flatten())
            .output()
            .unwrap();
        remove_image(&image);
        (out.status.success(), messages(&events(&out.stdout)))
    };
    let (ok, text) = build("victim", None);
    assert!(ok, "{text}");
    assert!(text.contains("kiln: kept 1 more R packages"), "{text}");
    // The attacker's install.R fails its build if it can see any cached package.
    let probe = "found <- list.files(Sys.getenv(\"KILN_R_CACHE\"), pattern = \"tar.gz$\", recursive = TRUE)\n\
                 if (length(found) > 0) stop(\"the cache holds \", paste(found, collapse = \" \"))\n\
                 install.packages(\"tinypkg\")\n";
    server.commit("attacker", &[("install.R", probe)], "probe the cache");
    let (ok, text) = build("attacker", None);
    assert!(ok, "another repository saw the cache: {text}");
    let dir = server.repo_dir("victim");
    git(&dir, &["checkout", "--quiet", "-b", "pull-1"]);
    server.commit("victim", &[("install.R", probe)], "a pull request");
    git(&dir, &["checkout", "--quiet", "-"]);
    let (ok, text) = build("victim", Some("pull-1"));
    assert!(ok, "another ref saw the cache: {text}");
    // And the probe is not blind: on the ref that filled the cache it finds the package.
    server.commit(
        "victim",
        &[("install.R", probe)],
        "the same probe on the default branch",
    );
    let (ok, text) = build("victim", None);
    assert!(!ok, "{text}");
    assert!(text.contains("the cache holds"), "{text}");
}
