//! Pin files from a record, for a user to commit so that the next build installs what this image
//! held (`kiln lock`). Pure functions: no I/O.

use crate::error::SbomError;
use crate::record::{Contents, deb_key};

/// kiln's Python environment.
pub const DEFAULT_PYTHON_ENV: &str = "/srv/venv";
/// kiln's conda environment.
pub const DEFAULT_CONDA_ENV: &str = "/srv/conda/envs/notebook";

fn header(record: &Contents, what: &str) -> String {
    let from = record
        .image
        .as_deref()
        .or(record.source.url.as_deref())
        .unwrap_or("an image");
    format!(
        "# {what}, pinned by kiln {} from what {from} holds\n# (contents record {})\n",
        record.kiln_version,
        record.digest()
    )
}

/// `requirements.txt` for the Python environment at `prefix`: `name==version` for every
/// distribution, `name @ URL` for VCS and archive installs, after the index options of kiln's
/// build-time lock. `--hash=sha256:` lines (every file of the version, from that lock, or the
/// archive hash of a URL install) are written only when every pinned distribution has one: pip turns on hash-checking for the whole
/// file as soon as one requirement has a hash, and would then refuse the others. Local folders
/// (the repository itself, editable installs) and conda's own packages are listed as comments.
pub fn requirements_txt(record: &Contents, prefix: &str) -> Result<String, SbomError> {
    let env = record
        .python
        .iter()
        .find(|e| e.prefix == prefix)
        .ok_or_else(|| SbomError::NoEnvironment {
            manager: "python",
            wanted: prefix.to_string(),
            available: record.python.iter().map(|e| e.prefix.clone()).collect(),
        })?;
    let mut out = header(record, &format!("Python packages of {prefix}"));
    if let Some(v) = &env.python_version {
        out.push_str(&format!("# Python {v}\n"));
    }
    for index in &env.indexes {
        out.push_str(index);
        out.push('\n');
    }
    let mut pins: Vec<(String, Vec<String>)> = Vec::new();
    let mut skipped = Vec::new();
    let mut conda = 0;
    for p in &env.packages {
        if p.installer.as_deref() == Some("conda") {
            conda += 1;
            continue;
        }
        let line = match &p.direct_url {
            None => format!("{}=={}", p.name, p.version),
            Some(du) if du.editable || du.kind == "dir" || du.url.starts_with("file:") => {
                skipped.push(format!(
                    "# {} {}: installed from the local folder {}, not pinned\n",
                    p.name, p.version, du.url
                ));
                continue;
            }
            Some(du) if du.kind == "vcs" => {
                let vcs = du.vcs.as_deref().unwrap_or("git");
                let mut url = format!("{vcs}+{}", du.url);
                if let Some(commit) = du.commit_id.as_deref().or(du.requested_revision.as_deref()) {
                    url.push('@');
                    url.push_str(commit);
                }
                if let Some(sub) = &du.subdirectory {
                    url.push_str(&format!("#subdirectory={sub}"));
                }
                format!("{} @ {url}", p.name)
            }
            Some(du) => format!("{} @ {}", p.name, du.url),
        };
        let hashes = if p.lock_hashes.is_empty() {
            p.hashes.get("sha256").into_iter().cloned().collect()
        } else {
            p.lock_hashes.clone()
        };
        pins.push((line, hashes));
    }
    let all_hashed = !pins.is_empty() && pins.iter().all(|(_, h)| !h.is_empty());
    if !all_hashed && pins.iter().any(|(_, h)| !h.is_empty()) {
        out.push_str(
            "# Hashes are left out: they are known for only some packages (those installed after the repository copy have none).\n",
        );
    }
    for (line, hashes) in pins {
        out.push_str(&line);
        if all_hashed {
            for h in hashes {
                out.push_str(&format!(" \\\n    --hash=sha256:{h}"));
            }
        }
        out.push('\n');
    }
    for s in skipped {
        out.push_str(&s);
    }
    if conda > 0 {
        out.push_str(&format!(
            "# {conda} packages installed by conda are in the conda lock, not here\n"
        ));
    }
    Ok(out)
}

/// How many packages a requirements file from [`requirements_txt`] pins.
pub fn pin_count(requirements: &str) -> usize {
    requirements
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(['#', '-', ' ']))
        .count()
}

/// Whether a requirements file from [`requirements_txt`] carries hashes (then every pin has them).
pub fn has_hashes(requirements: &str) -> bool {
    requirements.contains("--hash=sha256:")
}

/// The conda `@EXPLICIT` lock of the environment at `prefix`, in kiln's format (the same bytes as
/// the lock kiln stored in the image, when nothing changed it since). Fails when a package was
/// installed after the lock and so has no URL and sha256.
pub fn conda_explicit(record: &Contents, prefix: &str) -> Result<String, SbomError> {
    let env = record
        .conda
        .iter()
        .find(|e| e.prefix == prefix)
        .ok_or_else(|| SbomError::NoEnvironment {
            manager: "conda",
            wanted: prefix.to_string(),
            available: record.conda.iter().map(|e| e.prefix.clone()).collect(),
        })?;
    let mut out = String::from(
        "# kiln conda lock: install with `conda create --file` or `kiln build --locked`\n# platform: linux-64\n@EXPLICIT\n",
    );
    let mut missing = Vec::new();
    let mut packages: Vec<_> = env.packages.iter().collect();
    packages.sort_by(|a, b| {
        (&a.name, &a.version, &a.build, &a.subdir, &a.url)
            .cmp(&(&b.name, &b.version, &b.build, &b.subdir, &b.url))
    });
    for p in packages {
        match (&p.url, &p.sha256) {
            (Some(url), Some(sha)) => out.push_str(&format!("{url}#sha256:{sha}\n")),
            _ => missing.push(format!("{}-{}-{}", p.name, p.version, p.build)),
        }
    }
    if !missing.is_empty() {
        return Err(SbomError::Invalid(format!(
            "the conda environment {prefix} holds packages that its lock does not ({}): they were installed after it (postBuild?); add them to environment.yml and rebuild",
            missing.join(", ")
        )));
    }
    Ok(out)
}

/// The `runtime.txt` line that pins R's minor version and its CRAN snapshot
/// (`r-4.2-2024-06-01`), when the record knows the snapshot date.
pub fn runtime_txt(record: &Contents) -> Option<String> {
    let r = record.r.as_ref()?;
    let date = r.snapshot_date.as_ref()?;
    let minor: Vec<&str> = r.version.split('.').take(2).collect();
    Some(format!("r-{}-{date}\n", minor.join(".")))
}

/// `apt.txt` lines `name=version` (`name:arch=version` for a foreign architecture), for the
/// packages named in `only` (for example those of the repository's apt.txt), or for every
/// package. A name in `only` that the image does not have is left out.
pub fn apt_txt(record: &Contents, only: Option<&[&str]>) -> String {
    let native = record.architecture.as_deref().unwrap_or_default();
    let mut out = String::new();
    for p in &record.deb {
        if only.is_some_and(|names| !names.contains(&p.name.as_str())) {
            continue;
        }
        out.push_str(&format!("{}={}\n", deb_key(p, native), p.version));
    }
    out
}
