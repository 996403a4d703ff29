//! kiln: turn a code repository into a reproducible, runnable environment image.
//!
//! The binary is a thin layer over the crates: it parses arguments, calls them, and prints.

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Turn a code repository into a reproducible, runnable environment image",
    long_about = "kiln reads a repository's environment files (the same files and rules as repo2docker and \
                  Binder: requirements.txt, environment.yml, Pipfile, runtime.txt, apt.txt, postBuild, start, \
                  install.R, DESCRIPTION, Project.toml, default.nix, Dockerfile, binder/), plans a cached, \
                  layered image build, says why it decided what it did, and builds and runs the image on a \
                  Docker or Podman engine.\n\n\
                  Engine settings: DOCKER_HOST (default unix:///var/run/docker.sock); KILN_NETWORK, the network \
                  of builds and sessions (default: the engine's default network; `host` shares the host's \
                  network, which lets builds and sessions reach every loopback service: never use it for a \
                  public service); KILN_BUILDKIT=0|1 to force the builder.\n\n\
                  conda settings (environment.yml is solved and installed on the host with rattler): \
                  KILN_CONDA_MIRRORS, channels mapped to mirrors (CHANNEL=URL,...); KILN_CONDA_CACHE, the \
                  repodata, package and layer cache (default ~/.cache/kiln/conda); \
                  KILN_CONDA_VIRTUAL_PACKAGES, the target image's virtual packages (NAME=VERSION[=BUILD],...; \
                  default the bookworm base's, __glibc=2.36)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show how a repository would be built: the buildpacks, each decision and its reason, the layers
    /// and the environment key.
    Plan(commands::plan::PlanCommand),
    /// Print the Dockerfile kiln builds for a repository (its own Dockerfile, when it has one).
    Dockerfile(commands::plan::DockerfileCommand),
    /// Write the build context (a tar with the Dockerfile) that kiln sends to the engine.
    Context(commands::context::ContextCommand),
    /// Build a repository's image on the engine (reusing it when it exists for the same commit).
    Build(commands::build::BuildCommand),
    /// Build when needed, then run the image: JupyterLab on a free loopback port, or a command.
    Run(commands::run::RunCommand),
    /// Serve the BinderHub-compatible build API (GET /build/<provider>/<spec>, server-sent events),
    /// launching sessions on a JupyterHub (KILN_HUB_URL) or on the local engine.
    ///
    /// Settings, from the environment:
    ///   KILN_LISTEN          address:port to serve on (default 127.0.0.1:8585)
    ///   KILN_IMAGE_PREFIX    push images under this prefix (default: keep them in the engine)
    ///   KILN_ALLOWED_HOSTS   comma-separated repository hosts allowed although they resolve to
    ///                        loopback or private addresses (refused otherwise)
    ///   KILN_MAX_BUILDS      builds at once; more wait in a queue (default 2)
    ///   KILN_MAX_SESSIONS    sessions at once (default 8 local; no limit on a hub unless set)
    ///   KILN_MAX_SESSIONS_PER_REPO  sessions of one repository at once (default: no limit)
    ///   KILN_LAUNCH_TIMEOUT  seconds a session may take to start (default 600)
    ///   KILN_NETWORK         network of builds and sessions (see kiln --help)
    ///   KILN_CA_BUNDLE       CA bundle trusted during builds (default: SSL_CERT_FILE)
    ///   KILN_STATE           the SQLite state database (default ~/.local/share/kiln/state.db)
    ///   KILN_RATE_LIMIT      build requests per client address per hour (default 30; 0: none)
    ///   KILN_ALLOWED_SPECS   comma-separated <provider>/<spec> patterns (`*` = anything) that may
    ///                        be built; unset: all
    ///   KILN_BANNED_SPECS    patterns that are refused
    ///   KILN_BUILD_TOKEN     when set, build_only=true needs ?build_token= (or a bearer token)
    ///   KILN_SESSION_IDLE_SECONDS  stop local sessions idle this long (default 3600)
    ///   KILN_JUPYTERHUB_VERSION  jupyterhub-singleuser version put into images (default 6.1.1);
    ///                        its major version must match the hub's
    ///
    /// Launching on a JupyterHub (see README, Launching on a JupyterHub):
    ///   KILN_HUB_URL         the hub's public address, such as https://hub.example.org/
    ///   KILN_HUB_API_TOKEN   kiln's service token on the hub (both are needed)
    ///   KILN_HUB_API_URL     where kiln reaches the hub's API (default <KILN_HUB_URL>hub/api/)
    ///   KILN_HUB_TOKEN_SECONDS  lifetime of the token each launch returns (default 86400)
    ///   KILN_HUB_REAP_SECONDS   how often kiln deletes temporary users whose server is gone
    ///                        (default 60)
    #[command(verbatim_doc_comment)]
    Serve(commands::serve::ServeCommand),
    /// The base image.
    #[command(subcommand)]
    Base(commands::base::BaseCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(c) => c.run(),
        Command::Dockerfile(c) => c.run(),
        Command::Context(c) => c.run(),
        Command::Build(c) => runtime().and_then(|rt| rt.block_on(c.run())),
        Command::Run(c) => runtime().and_then(|rt| rt.block_on(c.run())),
        Command::Base(c) => runtime().and_then(|rt| rt.block_on(c.run())),
        Command::Serve(c) => runtime().and_then(|rt| rt.block_on(c.run())),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("kiln: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
