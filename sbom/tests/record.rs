//! The record made from a collected output holding every manager (tests/fixtures/every-manager.collected:
//! the os-release, architecture and dpkg lines of this Debian bookworm host, and by hand what the
//! snippets print in an image with /srv/venv, a conda environment, R, Julia and npm), and what is
//! made from the record: determinism, the table, pin files and diffs.

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

use kiln_sbom::{
    BaseImage, Contents, ImageMeta, Manager, Source, apt_txt, conda_explicit, diff,
    parse_collected, requirements_txt, runtime_txt, table,
};

const COLLECTED: &str = include_str!("fixtures/every-manager.collected");

fn meta() -> ImageMeta {
    ImageMeta {
        kiln_version: "0.1.0".into(),
        source: Source {
            url: Some("https://user:secret@git.example.org/lab/analysis.git".into()),
            commit: Some("1479e02c8d4b1f7e9a3c5d6e7f8091a2b3c4d5e6".into()),
            content_hash: None,
            commit_time: Some("2026-03-01T12:00:00Z".into()),
        },
        image: Some(
            "127.0.0.1:5000/binder-analysis-1a2b3c:1479e02c8d4b1f7e9a3c5d6e7f8091a2b3c4d5e6".into(),
        ),
        base_image: Some(BaseImage {
            name: "kiln/base:bookworm".into(),
            digest: Some(
                "sha256:1111111111111111111111111111111111111111111111111111111111111111".into(),
            ),
        }),
        environment_key: Some(
            "sha256:2222222222222222222222222222222222222222222222222222222222222222".into(),
        ),
    }
}

fn record() -> Contents {
    parse_collected(COLLECTED, meta()).expect("the fixture parses")
}

#[test]
fn every_manager_of_the_collected_output_is_in_the_record() {
    let r = record();
    assert_eq!(r.schema, "kiln.contents/v1");
    assert_eq!(r.architecture.as_deref(), Some("amd64"));
    assert_eq!(
        r.os.as_ref().unwrap().version_codename.as_deref(),
        Some("bookworm")
    );
    assert!(
        r.deb
            .iter()
            .any(|p| p.name == "bash" && p.source_version.is_some())
    );
    assert_eq!(r.python.len(), 2);
    let venv = r.python.iter().find(|e| e.prefix == "/srv/venv").unwrap();
    assert_eq!(venv.packages.len(), 14);
    assert!(
        venv.packages.iter().any(|p| p.name == "ruamel-yaml"),
        "PEP 503 names"
    );
    assert_eq!(r.conda[0].prefix, "/srv/conda/envs/notebook");
    assert_eq!(r.conda[0].packages.len(), 3);
    let rr = r.r.as_ref().unwrap();
    assert_eq!(rr.snapshot_date.as_deref(), Some("2024-06-01"));
    let cli: Vec<_> = rr.packages.iter().filter(|p| p.name == "cli").collect();
    assert_eq!(cli.len(), 1, "one cli: the first library's");
    assert_eq!(
        (cli[0].version.as_str(), cli[0].library.as_str()),
        ("3.6.3", "/srv/rlibs")
    );
    assert_eq!(r.julia[0].packages.len(), 3);
    assert_eq!(r.julia[0].julia_version.as_deref(), Some("1.10.5"));
    assert_eq!(r.npm[0].name, "configurable-http-proxy");
    assert_eq!(
        r.source.url.as_deref(),
        Some("https://git.example.org/lab/analysis.git"),
        "no credentials in the source URL"
    );
}

#[test]
fn the_same_environment_gives_the_same_bytes_and_digest() {
    let (a, b) = (record(), record());
    assert_eq!(a.to_canonical_json(), b.to_canonical_json());
    assert_eq!(a.digest(), b.digest());
    assert!(a.digest().starts_with("sha256:") && a.digest().len() == 71);

    // dpkg and importlib list in their own order; the record does not depend on it.
    let mut lines: Vec<&str> = COLLECTED.lines().collect();
    let deb = lines.iter().position(|l| l.ends_with("begin deb")).unwrap() + 1;
    let end = deb + lines[deb..].iter().position(|l| l.is_empty()).unwrap();
    lines[deb..end].reverse();
    let shuffled = parse_collected(&(lines.join("\n") + "\n"), meta()).unwrap();
    assert_eq!(shuffled.digest(), a.digest());
}

#[test]
fn the_record_is_canonical_json_that_reads_back() {
    let r = record();
    let bytes = r.to_canonical_json();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with("{\"architecture\":\"amd64\",\"base_image\":"),
        "sorted keys: {}",
        &text[..60]
    );
    assert!(
        !text.contains(": ") && !text.contains('\n'),
        "no white space"
    );
    assert!(
        !text.contains("secret") && !text.contains("t0ken"),
        "no credentials"
    );
    let again = Contents::from_json(&bytes).unwrap();
    assert_eq!(again, r);
    assert_eq!(again.to_canonical_json(), bytes);
}

#[test]
fn the_table_lists_every_package_aligned_by_manager() {
    let r = record();
    let t = table(&r);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 1 + r.entries().len());
    assert!(lines[0].starts_with("MANAGER  ENVIRONMENT"), "{}", lines[0]);
    let numpy = lines.iter().find(|l| l.contains(" numpy ")).unwrap();
    let header_at = lines[0].find("VERSION").unwrap();
    assert_eq!(
        &numpy[header_at..],
        "1.26.4",
        "versions line up under VERSION"
    );
    let managers: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let mut sorted = managers.clone();
    sorted.dedup();
    assert_eq!(
        sorted,
        ["deb", "conda", "python", "r", "julia", "npm"],
        "grouped, in order"
    );
    assert!(lines.iter().all(|l| !l.ends_with(' ')));
}

#[test]
fn requirements_txt_pins_every_distribution_and_leaves_local_folders_out() {
    let r = record();
    let text = requirements_txt(&r, "/srv/venv").unwrap();
    let expected = format!(
        "# Python packages of /srv/venv, pinned by kiln 0.1.0 from what {} holds\n\
# (contents record {})\n\
# Python 3.12.7\n\
jinja2==3.1.4\n\
jupyter-server==2.14.2\n\
jupyterhub==5.2.1\n\
jupyterlab==4.2.5\n\
kiln-demo-tool @ git+https://git.example.org/lab/tool.git@9f3c1b2a7d4e5f60718293a4b5c6d7e8f9a0b1c2\n\
markupsafe==2.1.5\n\
notebook==7.2.2\n\
numpy==1.26.4\n\
pandas==2.2.3\n\
python-dateutil==2.9.0.post0\n\
ruamel-yaml==0.18.6\n\
six==1.16.0\n\
tzdata==2024.2\n\
# mypkg 0.1.0: installed from the local folder file:///home/jovyan, not pinned\n",
        r.image.as_deref().unwrap(),
        r.digest()
    );
    assert_eq!(text, expected);
}

#[test]
fn requirements_txt_has_hash_lines_when_every_pin_has_a_hash() {
    let r = record();
    let text = requirements_txt(&r, "/srv/conda/envs/notebook").unwrap();
    assert!(text.contains(
        "packaging @ https://files.example.org/packaging-24.1-py3-none-any.whl \\\n    --hash=sha256:5b8f2217dbdbd2f7f384c41c628544e6d52f2d0f53c6d0c3ea61aa5d1d7ff124\n"
    ), "{text}");
    assert!(
        text.contains("# 2 packages installed by conda are in the conda lock"),
        "{text}"
    );
    let e = requirements_txt(&r, "/opt/none").unwrap_err().to_string();
    assert!(e.contains("/srv/conda/envs/notebook, /srv/venv"), "{e}");
}

#[test]
fn requirements_txt_writes_the_build_time_lock_with_its_indexes_and_every_hash() {
    let mut r = record();
    let env = r
        .python
        .iter_mut()
        .find(|e| e.prefix == "/srv/venv")
        .unwrap();
    env.indexes = vec![
        "--index-url https://pypi.org/simple".into(),
        "--extra-index-url http://127.0.0.1:9/simple/".into(),
    ];
    for (i, p) in env.packages.iter_mut().enumerate() {
        p.lock_hashes = vec![format!("{i:064x}"), format!("{:064x}", i + 100)];
    }
    let text = requirements_txt(&r, "/srv/venv").unwrap();
    assert!(
        text.contains("# Python 3.12.7\n--index-url https://pypi.org/simple\n--extra-index-url http://127.0.0.1:9/simple/\n"),
        "{text}"
    );
    let numpy = text
        .lines()
        .position(|l| l.starts_with("numpy==1.26.4"))
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[numpy].ends_with(" \\"), "{text}");
    assert!(lines[numpy + 1].starts_with("    --hash=sha256:"), "{text}");
    assert!(lines[numpy + 2].starts_with("    --hash=sha256:"), "{text}");
    // Every requirement line carries hashes: pip's hash-checking mode needs all or none.
    for (i, l) in lines.iter().enumerate() {
        if !l.starts_with('#') && !l.starts_with("--") && !l.starts_with(' ') {
            assert!(
                lines[i + 1].contains("--hash=sha256:"),
                "{l} has no hash: {text}"
            );
        }
    }
}

#[test]
fn the_conda_lock_is_written_back_byte_for_byte() {
    let r = record();
    // The lock as the image holds it: the section's lines without the `|` of the collection.
    let start = COLLECTED.find("|# kiln conda lock").unwrap();
    let end = start + COLLECTED[start..].find("\n\n").unwrap() + 1;
    let lock: String = COLLECTED[start..end]
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix('|').unwrap()))
        .collect();
    assert_eq!(
        conda_explicit(&r, "/srv/conda/envs/notebook").unwrap(),
        lock
    );
}

#[test]
fn a_conda_package_installed_after_the_lock_blocks_the_lock() {
    let collected = COLLECTED.replace(
        "|rich-13.9.4-pyhd8ed1ab_0.json\n",
        "|rich-13.9.4-pyhd8ed1ab_0.json\n|zstd-1.5.6-ha6fb4c9_0.json\n",
    );
    let r = parse_collected(&collected, meta()).unwrap();
    let e = conda_explicit(&r, "/srv/conda/envs/notebook")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("zstd-1.5.6-ha6fb4c9_0") && e.contains("installed after it"),
        "{e}"
    );
}

#[test]
fn runtime_txt_and_apt_txt_pins() {
    let r = record();
    assert_eq!(runtime_txt(&r).as_deref(), Some("r-4.4-2024-06-01\n"));
    let bash = r.deb.iter().find(|p| p.name == "bash").unwrap();
    let libc = r.deb.iter().find(|p| p.name == "libc6").unwrap();
    assert_eq!(
        apt_txt(&r, Some(&["libc6", "bash", "not-installed"])),
        format!("bash={}\nlibc6={}\n", bash.version, libc.version)
    );
    assert_eq!(apt_txt(&r, None).lines().count(), r.deb.len());
}

#[test]
fn a_diff_of_one_changed_pin_shows_exactly_that_change() {
    let a = record();
    let changed = COLLECTED.replace(
        "\"name\": \"numpy\", \"requested\": true, \"version\": \"1.26.4\"",
        "\"name\": \"numpy\", \"requested\": true, \"version\": \"2.0.2\"",
    );
    assert_ne!(changed, COLLECTED, "the fixture has that numpy");
    let b = parse_collected(&changed, meta()).unwrap();
    let d = diff(&a, &b);
    assert!(d.base_image.is_none() && d.runtimes.is_empty());
    assert_eq!(d.packages.len(), 1);
    let p = &d.packages[0];
    assert_eq!(
        (p.manager, p.environment.as_deref()),
        (Manager::Python, Some("/srv/venv"))
    );
    assert!(p.added.is_empty() && p.removed.is_empty());
    assert_eq!(p.changed.len(), 1);
    assert_eq!(
        (
            p.changed[0].name.as_str(),
            p.changed[0].old.as_str(),
            p.changed[0].new.as_str()
        ),
        ("numpy", "1.26.4", "2.0.2")
    );
    assert_eq!(
        d.table(),
        "MANAGER  ENVIRONMENT  PACKAGE  CHANGE   OLD     NEW\n\
python   /srv/venv    numpy    changed  1.26.4  2.0.2\n"
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["packages"][0]["changed"][0]["new"], "2.0.2");
    assert_eq!(json["from"], a.digest().as_str());
}

#[test]
fn a_diff_shows_base_image_runtime_and_added_removed_packages() {
    let a = record();
    let mut meta_b = meta();
    meta_b.base_image.as_mut().unwrap().digest =
        Some("sha256:3333333333333333333333333333333333333333333333333333333333333333".into());
    let collected = COLLECTED
        .replace("version\t4.4.1\n", "version\t4.4.2\n")
        .replace("\"configurable-http-proxy\"", "\"yarn\"");
    let b = parse_collected(&collected, meta_b).unwrap();
    let d = diff(&a, &b).with_sizes(2_000_000_000, 2_100_000_000);
    assert!(d.base_image.is_some());
    assert_eq!(d.runtimes.len(), 1);
    assert_eq!(d.runtimes[0].what, "r");
    let npm = d
        .packages
        .iter()
        .find(|p| p.manager == Manager::Npm)
        .unwrap();
    assert_eq!(
        (npm.added[0].name.as_str(), npm.removed[0].name.as_str()),
        ("yarn", "configurable-http-proxy")
    );
    let t = d.table();
    assert!(t.starts_with("WHAT        OLD"), "{t}");
    assert!(
        t.contains("base image  kiln/base:bookworm@sha256:1111"),
        "{t}"
    );
    assert!(t.contains("\nr           4.4.1"), "{t}");
    assert!(t.contains("npm      "), "{t}");
    let npm_rows: Vec<&str> = t.lines().filter(|l| l.starts_with("npm")).collect();
    assert!(npm_rows[0].contains("configurable-http-proxy") && npm_rows[0].contains("removed"));
    assert!(npm_rows[1].contains("yarn") && npm_rows[1].contains("added"));
}
