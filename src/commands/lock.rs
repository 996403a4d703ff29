//! `kiln lock`: pin files written into a checkout from what its image holds, for the user to
//! commit, so that the next build installs exactly that.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kiln_builder::contents::{self, Lookup};
use kiln_buildpacks::Buildpack;
use kiln_sbom::Contents;
use kiln_sbom::lock::{DEFAULT_CONDA_ENV, DEFAULT_PYTHON_ENV};

use crate::commands::build::BuildArgs;
use crate::output::Output;

#[derive(Args)]
pub struct LockCommand {
    /// Take the packages from this image instead of building the checkout (by tag or digest).
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// Print the files instead of writing them.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    build: BuildArgs,
}

/// A pin file for the checkout.
struct PinFile {
    /// Relative to the checkout.
    path: String,
    text: String,
    what: String,
}

impl LockCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let dir = PathBuf::from(&self.build.source);
        if !dir.is_dir() {
            anyhow::bail!(
                "{}: kiln lock writes into a checkout, so SOURCE must be a local folder (clone the repository first)",
                self.build.source
            );
        }
        let plan = kiln_buildpacks::plan(&dir, &self.build.plan.options())?;
        let record = match &self.image {
            Some(image) => {
                let engine = self.build.engine().await.ok();
                contents::find(engine.as_ref(), None, image, Lookup::Auto)
                    .await?
                    .contents
            }
            None => self.build_record().await?,
        };
        let files = pin_files(&plan, &record, &dir)?;
        if files.is_empty() {
            anyhow::bail!(
                "nothing to pin: the image holds no Python environment at {DEFAULT_PYTHON_ENV}, no conda environment at {DEFAULT_CONDA_ENV}, and the repository has no apt.txt or R runtime (a repository Dockerfile pins nothing kiln can write)"
            );
        }
        for f in &files {
            if self.dry_run {
                println!("==> {} ({})", f.path, f.what);
                print!("{}", f.text);
            } else {
                std::fs::write(dir.join(&f.path), &f.text)
                    .with_context(|| format!("writing {}", f.path))?;
                println!("Wrote {}: {}", f.path, f.what);
            }
        }
        if !self.dry_run {
            let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
            println!(
                "Commit them (git add {}) so that the next build installs exactly these packages.",
                paths.join(" ")
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Build the checkout (or reuse its image) and read what the image holds.
    async fn build_record(&self) -> anyhow::Result<Contents> {
        let mut output = Output::new(self.build.json_logs);
        let Some(engine) = self.build.connect(&mut output).await else {
            anyhow::bail!("no engine to build the checkout on (or give --image)");
        };
        let built = self.build.build(&engine, &mut output).await;
        output.finish();
        let built = built.map_err(|_| anyhow::anyhow!("the build failed; nothing was written"))?;
        Ok(match built.contents {
            Some(recorded) => recorded.contents,
            None => {
                contents::find(Some(&engine), None, &built.image, Lookup::Auto)
                    .await?
                    .contents
            }
        })
    }
}

/// The pin files for the environment files this repository uses.
fn pin_files(
    plan: &kiln_buildpacks::BuildPlan,
    record: &Contents,
    dir: &Path,
) -> anyhow::Result<Vec<PinFile>> {
    let config = plan
        .config_dir
        .clone()
        .map(|d| format!("{d}/"))
        .unwrap_or_default();
    let uses = |b: Buildpack| plan.buildpacks.iter().any(|u| u.name == b);
    let exists = |name: &str| dir.join(format!("{config}{name}")).is_file();
    let mut out = Vec::new();
    let python = record.python.iter().any(|e| e.prefix == DEFAULT_PYTHON_ENV);
    if uses(Buildpack::Python) && python {
        if exists("uv.lock") {
            eprintln!(
                "kiln: {config}uv.lock pins the Python packages already; requirements.txt is not written"
            );
        } else {
            let text = kiln_sbom::requirements_txt(record, DEFAULT_PYTHON_ENV)?;
            let hashed = if kiln_sbom::lock::has_hashes(&text) {
                "with hashes"
            } else {
                "without hashes"
            };
            let pins = kiln_sbom::lock::pin_count(&text);
            out.push(PinFile {
                path: format!("{config}requirements.txt"),
                what: format!("{pins} Python packages, {hashed}"),
                text,
            });
        }
    }
    if uses(Buildpack::Pipfile) {
        eprintln!("kiln: Pipfile.lock is the Pipfile's lock (pipenv lock); kiln does not write it");
    }
    if uses(Buildpack::Conda) && record.conda.iter().any(|e| e.prefix == DEFAULT_CONDA_ENV) {
        let text = kiln_sbom::conda_explicit(record, DEFAULT_CONDA_ENV)?;
        let packages = text.lines().filter(|l| l.contains("#sha256:")).count();
        out.push(PinFile {
            path: format!("{config}conda-linux-64.lock"),
            what: format!("{packages} conda packages with their sha256 (installed instead of solving environment.yml)"),
            text,
        });
    }
    if uses(Buildpack::R)
        && let Some(line) = kiln_sbom::runtime_txt(record)
    {
        out.push(PinFile {
            path: format!("{config}runtime.txt"),
            what: format!("R and its CRAN snapshot: {}", line.trim()),
            text: line,
        });
    }
    let apt = format!("{config}apt.txt");
    if let Ok(current) = std::fs::read_to_string(dir.join(&apt)) {
        // apt.txt as the planner reads it (already checked by the plan above): the names alone.
        let entries = kiln_buildpacks::parse::apt::parse(&apt, &current)?;
        let names: Vec<&str> = entries
            .iter()
            .map(|e| e.split(['=', ':']).next().unwrap_or_default())
            .collect();
        let pinned = kiln_sbom::apt_txt(record, Some(&names));
        let count = pinned.lines().count();
        let missing: Vec<&str> = names
            .iter()
            .filter(|n| {
                !pinned
                    .lines()
                    .any(|l| l.split(['=', ':']).next() == Some(**n))
            })
            .copied()
            .collect();
        let mut text =
            String::from("# Debian packages, pinned by kiln lock to the versions the image held\n");
        text.push_str(&pinned);
        for name in &missing {
            text.push_str(&format!("{name}\n"));
        }
        out.push(PinFile {
            path: apt,
            what: if missing.is_empty() {
                format!("{count} Debian packages at their versions")
            } else {
                format!("{count} Debian packages at their versions; not in the image, left unpinned: {}", missing.join(" "))
            },
            text,
        });
    }
    Ok(out)
}
