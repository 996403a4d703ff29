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
    /// Settings, from the environment (or a TOML file, --config; keys without KILN_, lowercase):
    ///   KILN_LISTEN          address:port to serve on (default 127.0.0.1:8585)
    ///   KILN_STATE           the SQLite state database (default ~/.local/share/kiln/state.db)
    ///   KILN_DEVELOPMENT     1 allows KILN_NETWORK=host (builds and sessions then reach every
    ///                        loopback service of the machine: development machines only)
    ///   KILN_IMAGE_PREFIX    push images under this prefix (default: keep them in the engine)
    ///   KILN_NETWORK         network of builds and sessions (see kiln --help)
    ///   KILN_CA_BUNDLE       CA bundle trusted during builds (default: SSL_CERT_FILE)
    ///   KILN_PYPI_MIRROR     Python package index builds use instead of PyPI (pip, uv, pipenv);
    ///                        KILN_NPM_REGISTRY, KILN_JULIA_PKG_SERVER the same for npm and Julia
    ///   KILN_CRAN_URL        R packages' CRAN snapshot URL template ({date}: runtime.txt's date)
    ///   KILN_JULIA_VERSIONS_URL  the list of Julia releases (default the official versions.json)
    ///   KILN_DOI_RESOLVER, KILN_INVENIO_HOSTS, KILN_FIGSHARE_HOSTS, KILN_FIGSHARE_API,
    ///   KILN_DATAVERSE_HOSTS, KILN_HYDROSHARE_HOSTS, KILN_SWH_API  where archived records are looked up (README:
    ///                        Archived records)
    ///   KILN_JUPYTERHUB_VERSION  jupyterhub-singleuser version put into images (default 6.1.1);
    ///                        its major version must match the hub's
    ///
    /// What builds may fetch:
    ///   KILN_ALLOWED_HOSTS   hosts fetched although they are on loopback or private networks:
    ///                        host (its ports 22, 80, 443, 9418), host:port, host:* (every port)
    ///   KILN_GIT_CREDENTIAL_HOSTS  hosts the operator's git credentials (KILN_GIT_USERNAME and
    ///                        KILN_GIT_PASSWORD, credential helpers, the SSH agent) are used for
    ///   KILN_MAX_REPO_BYTES  bytes a fetch may bring, checked out (default 1G)
    ///   KILN_MAX_REPO_FILES  files a repository may have (default 100000)
    ///   KILN_FETCH_TIMEOUT   seconds a fetch may take (default 300)
    ///
    /// Builds:
    ///   KILN_MAX_BUILDS      builds at once; more wait in a queue (default 2)
    ///   KILN_MAX_QUEUED_BUILDS  builds waiting; more are refused (default 20)
    ///   KILN_MAX_BUILDS_PER_CLIENT  builds one client has running or waiting (default 3)
    ///   KILN_BUILD_MAX_AGE   seconds a build may run before it is stopped (default 3600)
    ///   KILN_BUILD_MEMORY_LIMIT, KILN_BUILD_CPU_LIMIT  memory and CPUs of a build's steps
    ///                        (default 4G and 2; the classic builder applies them)
    ///   KILN_MAX_LOG_LINES   events kept per build (default 20000)
    ///
    /// Callers:
    ///   KILN_RATE_LIMIT      build requests per client per hour (default 30; 0: none)
    ///   KILN_MAX_STREAMS_PER_CLIENT  event streams a client may hold open (default 20)
    ///   KILN_TRUSTED_PROXY_HOPS  proxies whose X-Forwarded-For is believed (default 0)
    ///   KILN_BAN_NETWORKS    CIDR=label,... clients refused with 403
    ///   KILN_ALLOWED_SPECS   comma-separated <provider>/<spec> patterns (`*` = anything; the
    ///                        decoded spec, ignoring case) that may be built; unset: all
    ///   KILN_BANNED_SPECS    patterns that are refused
    ///   KILN_GITHUB_HOST, KILN_GITLAB_HOST  where gh and gl specs point (default github.com,
    ///                        gitlab.com): a host name or a URL without a path
    ///   KILN_BUILD_TOKEN     the operator's token: build_only and the JSON API need it when it is
    ///                        set; it skips the rate limit, lists every image, cancels builds
    ///
    /// Sessions:
    ///   KILN_MAX_SESSIONS    sessions at once (default 8 local; no limit on a hub unless set)
    ///   KILN_MAX_SESSIONS_PER_REPO  sessions of one repository at once (default: no limit)
    ///   KILN_SPEC_CONFIG     pattern=N,... sessions of the specs a pattern matches, instead of
    ///                        the above (BinderHub's spec_config; the longest match wins)
    ///   KILN_LAUNCH_TIMEOUT  seconds a session may take to start (default 600)
    ///   KILN_SESSION_IDLE_SECONDS  stop local sessions idle this long (default 3600)
    ///   KILN_SESSION_MAX_AGE stop local sessions this old (default 21600)
    ///   KILN_SESSION_MEMORY_LIMIT, KILN_SESSION_CPU_LIMIT, KILN_SESSION_PIDS_LIMIT
    ///                        a local session's memory, CPUs, processes (default 2G, 1, 1024)
    ///
    /// Launching on a JupyterHub (see README, Launching on a JupyterHub):
    ///   KILN_HUB_URL         the hub's public address, such as https://hub.example.org/
    ///   KILN_HUB_API_TOKEN   kiln's service token on the hub (both are needed)
    ///   KILN_HUB_API_URL     where kiln reaches the hub's API (default <KILN_HUB_URL>hub/api/)
    ///   KILN_HUB_SERVICE_NAME  kiln's service name on the hub (default kiln); callers' hub
    ///                        tokens need access:services!service=<name>
    ///   KILN_HUB_TOKEN_SECONDS  lifetime of the token each launch returns (default 86400)
    ///   KILN_HUB_REAP_SECONDS   how often kiln deletes temporary users whose server is gone
    ///                        (default 60)
    ///
    /// Inside a JupyterHub, as its service (see README, Inside a JupyterHub):
    ///   KILN_BASE_URL        serve every route under this path, such as /services/kiln/
    ///   KILN_PUBLIC_URL      the address links are made with (default: the request's)
    ///   KILN_HUB_AUTH        1: people log in through the hub (OAuth); hub tokens are accepted
    ///   KILN_ALLOW_ANONYMOUS  1: callers who are not logged in may build too (default 0 with
    ///                        hub login)
    ///   KILN_BUILD_GROUPS    hub groups whose members may build (default: every hub user)
    ///   KILN_GROUP_LIMITS    group=rate:N builds:N sessions:N,... limits of a group's members
    ///   KILN_MAX_SESSIONS_PER_USER  servers one hub user may run through kiln (default 2)
    ///   KILN_HUB_LAUNCH_SERVER  named (a server per repository, default) or default
    ///   KILN_HUB_OAUTH_CLIENT_ID, KILN_HUB_OAUTH_REDIRECT_URI  the OAuth client (default
    ///                        service-<name>, <base>oauth_callback)
    ///   KILN_LOGIN_SECONDS   how long a login lasts (default 43200)
    ///   KILN_COOKIE_SECRET   64 hex digits signing session cookies (default: a key file
    ///                        kiln_cookie_secret beside the state database)
    ///   KILN_CREDENTIALS_KEY  64 hex digits sealing hub users' git tokens (PUT
    ///                        <base>api/credentials/<host>; default: a key file
    ///                        kiln_credentials_key beside the state database)
    ///
    /// Communities (see README, Communities):
    ///   KILN_COMMUNITIES_DIR  the folder of community files (<id>.toml), watched for changes;
    ///                        their catalogues' state is kept in catalog.db beside KILN_STATE
    ///   KILN_CATALOG_TICK_SECONDS  how often entries never checked, or due by their schedule,
    ///                        are checked (default 60)
    ///   KILN_CATALOG_ENVIRONMENT_PREFIX  where catalogue builds put environment images, shared by
    ///                        the communities whose prefix is in its registry (default
    ///                        KILN_IMAGE_PREFIX)
    ///   KILN_CATALOG_STATE   the catalogues' state (default catalog.db beside KILN_STATE); replicas
    ///                        of one service share it
    #[command(verbatim_doc_comment)]
    Serve(commands::serve::ServeCommand),
    /// The base image.
    #[command(subcommand)]
    Base(commands::base::BaseCommand),
    /// Pull images onto the engine (DOCKER_HOST) before they are needed, such as before a class:
    /// the first sessions then start without waiting for a pull. Run it once per engine that runs
    /// sessions; `kiln serve` does the same for its engine at POST /api/prewarm.
    Prewarm(commands::prewarm::PrewarmCommand),
    /// Print what an image holds: every Debian, Python, conda, R, Julia and npm package, from the
    /// record kiln put in the image (/opt/kiln/contents.json) or beside it in its registry (an OCI
    /// referrer), as a table, CycloneDX 1.6 JSON or kiln's record.
    Sbom(commands::sbom::SbomCommand),
    /// What changed between two images: packages added, removed and changed per package manager
    /// and environment, the runtimes, the base image and the image size.
    Diff(commands::sbom::DiffCommand),
    /// Write pin files into a checkout from what its image holds, for you to commit, so that the
    /// next build installs exactly those packages: requirements.txt (with hashes), the conda lock
    /// (conda-linux-64.lock), runtime.txt with R's CRAN snapshot date, apt.txt with versions. It
    /// builds the checkout first (or reuses its image), or takes the packages of --image.
    Lock(commands::lock::LockCommand),
    /// A community's curated catalogue (README: Communities): `validate` checks community files
    /// offline; `list`, `check`, `promote`, `deprecate`, `retire`, `pin`, `unpin`, `prune`, `prewarm`,
    /// `diff` and `profiles` ask a running `kiln serve` (--service, KILN_SERVICE_URL) as the community's admin (--token,
    /// KILN_CATALOG_TOKEN: its admin token, the operator's build token, or an admin's hub token).
    Catalog(commands::catalog::CatalogCommand),
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
        Command::Prewarm(c) => runtime().and_then(|rt| rt.block_on(c.run())),
        Command::Catalog(c) => runtime().and_then(|rt| rt.block_on(c.run())),
        Command::Sbom(c) => runtime().and_then(|rt| rt.block_on(c.run())),
        Command::Diff(c) => runtime().and_then(|rt| rt.block_on(c.run())),
        Command::Lock(c) => runtime().and_then(|rt| rt.block_on(c.run())),
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
