//! `kiln plan` and `kiln dockerfile`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kiln_buildpacks::{PlanOptions, RenderOptions};

#[derive(Args)]
pub struct PlanCommand {
    /// The repository folder, or an archived record (doi:DOI, zenodo:DOI, a landing URL, a SWHID,
    /// ckan:URL), which is fetched first.
    path: PathBuf,
    /// Print the plan as JSON (top-level `buildpacks`, primary first, and `environment_key`).
    #[arg(long)]
    json: bool,
    /// Plan without the network: do not solve a conda environment (by default the plan shows its
    /// lock, solved with the channels of environment.yml and the mirrors of KILN_CONDA_MIRRORS),
    /// and choose Julia from kiln's built-in list instead of the list of Julia releases.
    #[arg(long)]
    no_solve: bool,
    #[command(flatten)]
    options: PlanArgs,
}

#[derive(Args)]
pub struct DockerfileCommand {
    /// The repository folder.
    path: PathBuf,
    /// Render for the classic builder: no cache mounts, package caches disabled instead.
    #[arg(long)]
    classic: bool,
    /// Mount the build context's kiln/build-trust/ca-bundle.pem in the steps that download and
    /// trust it (BuildKit only).
    #[arg(long, conflicts_with = "classic")]
    build_trust: bool,
    #[command(flatten)]
    options: PlanArgs,
}

/// Choices that shape a plan.
#[derive(Args, Clone)]
pub struct PlanArgs {
    /// The image to build on.
    #[arg(long, env = "KILN_BASE_IMAGE", default_value = kiln_buildpacks::options::DEFAULT_BASE_IMAGE)]
    pub base_image: String,
    /// The Python version of the base image (used without a download).
    #[arg(long, env = "KILN_BASE_PYTHON", default_value = kiln_buildpacks::options::BASE_PYTHON)]
    pub base_python: String,
    /// The image's user (repo2docker's --user-name works too; a repository Dockerfile gets it as
    /// the build argument NB_USER).
    #[arg(
        long,
        visible_alias = "user-name",
        env = "KILN_USER",
        default_value = "jovyan"
    )]
    pub user: String,
    /// The image user's uid and gid (repo2docker's --user-id works too; a repository Dockerfile
    /// gets it as NB_UID).
    #[arg(
        long,
        visible_alias = "user-id",
        env = "KILN_UID",
        default_value_t = 1000
    )]
    pub uid: u32,
    /// Where the repository goes in the image, and the sessions' working folder (default: the
    /// user's home), as repo2docker's --target-repo-dir. The image gets it as REPO_DIR.
    #[arg(long, value_name = "DIR")]
    pub target_repo_dir: Option<String>,
    /// Jupyter packages for Python environments, as pip requirements; repeat to list several
    /// (replaces kiln's pinned set: jupyterlab, notebook, jupyterhub).
    #[arg(long = "jupyter", value_name = "REQUIREMENT")]
    pub jupyter: Vec<String>,
    /// CRAN snapshot URL template; `{date}` becomes the runtime.txt date or `latest`.
    #[arg(long, env = "KILN_CRAN_URL", default_value = kiln_buildpacks::options::DEFAULT_CRAN_URL)]
    pub cran_url: String,
    /// The list of Julia releases (the official versions.json or a mirror of it; file:// works):
    /// `[compat] julia` picks the newest stable release in it. Fetched for Julia repositories only,
    /// kept a day in ~/.cache/kiln/julia/.
    #[arg(long, env = "KILN_JULIA_VERSIONS_URL", default_value = kiln_buildpacks::options::DEFAULT_JULIA_VERSIONS_URL)]
    pub julia_versions_url: String,
}

impl PlanArgs {
    pub fn options(&self) -> PlanOptions {
        let mut options = PlanOptions {
            base_image: self.base_image.clone(),
            base_python: self.base_python.clone(),
            user: self.user.clone(),
            uid: self.uid,
            repo_dir: self.target_repo_dir.clone(),
            cran_url: self.cran_url.clone(),
            julia_versions_url: self.julia_versions_url.clone(),
            ..PlanOptions::default()
        };
        if !self.jupyter.is_empty() {
            options.jupyter_packages = self.jupyter.clone();
        }
        options
    }
}

impl PlanCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let mut options = self.options.options();
        let mut warn = |e: kiln_builder::Event| eprintln!("{}", e.message);
        let record = match self.path.to_str() {
            Some(spec) if !self.path.is_dir() => kiln_builder::source::RecordSource::parse(spec)?,
            _ => None,
        };
        let fetched = match &record {
            Some(record) => Some(runtime.block_on(fetch_record(record, &mut warn))?),
            None => None,
        };
        let path = match &fetched {
            Some(dir) => dir.path().join("repo"),
            None => self.path.clone(),
        };
        // A repository that cannot be read is reported by the plan itself, below.
        if !self.no_solve && kiln_buildpacks::selects_julia(&path).unwrap_or(false) {
            options.julia_releases = runtime.block_on(kiln_builder::julia::releases(
                &options.julia_versions_url,
                &mut warn,
            ));
        }
        let mut plan = kiln_buildpacks::plan(&path, &options)
            .with_context(|| format!("cannot plan {}", self.path.display()))?;
        let has_conda = plan.layers().is_some_and(|l| l.environment.conda.is_some());
        if has_conda && !self.no_solve {
            let settings = kiln_conda::CondaSettings::from_env()?;
            let mut quiet = |_: kiln_builder::Event| {};
            runtime
                .block_on(kiln_builder::conda::lock_plan(
                    &mut plan, None, &settings, &mut quiet,
                ))
                .with_context(|| {
                    format!(
                        "cannot lock the conda environment of {} (plan without it: --no-solve)",
                        self.path.display()
                    )
                })?;
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{}", kiln_buildpacks::describe(&plan));
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl DockerfileCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let plan = plan(&self.path, &self.options)?;
        let render = RenderOptions {
            buildkit: !self.classic,
            build_trust: self.build_trust,
            ..RenderOptions::default()
        };
        print!("{}", kiln_buildpacks::dockerfile(&plan, &render)?);
        Ok(ExitCode::SUCCESS)
    }
}

/// An archived record's files, in `repo/` of a temporary folder (removed when it is dropped).
async fn fetch_record(
    record: &kiln_builder::source::RecordSource,
    sink: &mut dyn kiln_builder::EventSink,
) -> anyhow::Result<tempfile::TempDir> {
    let settings = kiln_builder::git::FetchSettings::default();
    let found = kiln_builder::records::resolve(record, &settings, &settings.records, sink).await?;
    let dir = tempfile::Builder::new().prefix("kiln-plan-").tempdir()?;
    kiln_builder::records::fetch(&found, &dir.path().join("repo"), &settings, sink).await?;
    Ok(dir)
}

fn plan(path: &std::path::Path, args: &PlanArgs) -> anyhow::Result<kiln_buildpacks::BuildPlan> {
    kiln_buildpacks::plan(path, &args.options())
        .with_context(|| format!("cannot plan {}", path.display()))
}
