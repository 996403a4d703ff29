//! kiln: turn a code repository into a reproducible, runnable environment image.
//!
//! The binary is a thin layer over the crates: it parses arguments, calls them, and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kiln_buildpacks::{PlanOptions, RenderOptions};

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Turn a code repository into a reproducible, runnable environment image",
    long_about = "kiln reads a repository's environment files (the same files and rules as repo2docker and \
                  Binder: requirements.txt, environment.yml, Pipfile, runtime.txt, apt.txt, postBuild, start, \
                  install.R, DESCRIPTION, Project.toml, default.nix, Dockerfile, binder/), plans a cached, \
                  layered image build, and says why it decided what it did."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show how a repository would be built: the buildpacks, each decision and its reason, the layers
    /// and the environment key.
    Plan {
        /// The repository folder.
        path: PathBuf,
        /// Print the plan as JSON (top-level `buildpacks`, primary first, and `environment_key`).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        options: PlanArgs,
    },
    /// Print the Dockerfile kiln builds for a repository (its own Dockerfile, when it has one).
    Dockerfile {
        /// The repository folder.
        path: PathBuf,
        /// Render for the classic builder: no cache mounts, package caches disabled instead.
        #[arg(long)]
        classic: bool,
        #[command(flatten)]
        options: PlanArgs,
    },
}

/// Choices that shape a plan.
#[derive(Args)]
struct PlanArgs {
    /// The image to build on.
    #[arg(long, env = "KILN_BASE_IMAGE", default_value = kiln_buildpacks::options::DEFAULT_BASE_IMAGE)]
    base_image: String,
    /// The Python version of the base image (used without a download).
    #[arg(long, env = "KILN_BASE_PYTHON", default_value = kiln_buildpacks::options::BASE_PYTHON)]
    base_python: String,
    /// The image's user.
    #[arg(long, env = "KILN_USER", default_value = "jovyan")]
    user: String,
    /// The image user's uid (and gid).
    #[arg(long, env = "KILN_UID", default_value_t = 1000)]
    uid: u32,
    /// Jupyter packages for Python environments, as pip requirements; repeat to list several
    /// (replaces kiln's pinned set: jupyterlab, notebook, jupyterhub).
    #[arg(long = "jupyter", value_name = "REQUIREMENT")]
    jupyter: Vec<String>,
    /// CRAN snapshot URL template; `{date}` becomes the runtime.txt date or `latest`.
    #[arg(long, env = "KILN_CRAN_URL", default_value = kiln_buildpacks::options::DEFAULT_CRAN_URL)]
    cran_url: String,
}

impl PlanArgs {
    fn options(&self) -> PlanOptions {
        let mut options = PlanOptions {
            base_image: self.base_image.clone(),
            base_python: self.base_python.clone(),
            user: self.user.clone(),
            uid: self.uid,
            cran_url: self.cran_url.clone(),
            ..PlanOptions::default()
        };
        if !self.jupyter.is_empty() {
            options.jupyter_packages = self.jupyter.clone();
        }
        options
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kiln: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Plan {
            path,
            json,
            options,
        } => {
            let plan = plan(&path, &options)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", kiln_buildpacks::describe(&plan));
            }
        }
        Command::Dockerfile {
            path,
            classic,
            options,
        } => {
            let plan = plan(&path, &options)?;
            let render = RenderOptions {
                buildkit: !classic,
                ..RenderOptions::default()
            };
            print!("{}", kiln_buildpacks::dockerfile(&plan, &render)?);
        }
    }
    Ok(())
}

fn plan(path: &std::path::Path, args: &PlanArgs) -> anyhow::Result<kiln_buildpacks::BuildPlan> {
    kiln_buildpacks::plan(path, &args.options())
        .with_context(|| format!("cannot plan {}", path.display()))
}
