//! `kiln build`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use kiln_builder::git::{FetchLimits, FetchSettings, LibGit, OperatorCredentials};
use kiln_builder::{BuildRequest, Built, Engine, EngineSettings, Source};

use crate::commands::plan::PlanArgs;
use crate::output::Output;

#[derive(Args)]
pub struct BuildCommand {
    #[command(flatten)]
    pub build: BuildArgs,
}

/// What `kiln build` and `kiln run` share.
#[derive(Args)]
pub struct BuildArgs {
    /// A repository: a local folder, a git URL (https, http, git, ssh, file), gh:org/repo, or an
    /// archived record: doi:DOI, https://doi.org/DOI, zenodo:DOI, figshare:DOI, dataverse:DOI or a
    /// record's landing URL (Zenodo, Figshare, Dataverse), a SWHID (swh:1:dir:..., swh:1:rev:...) or
    /// ckan:<dataset URL>.
    pub source: String,
    /// Branch, tag or commit to build (default: the remote's HEAD).
    #[arg(long = "ref")]
    pub reference: Option<String>,
    /// Name of the image (default kiln/<slug>:<commit>, or :local-<content hash> for a folder).
    #[arg(long)]
    pub image_name: Option<String>,
    /// A build argument for the Dockerfile, KEY=VALUE (repeatable).
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = key_value)]
    pub build_args: Vec<(String, String)>,
    /// A label on the image, KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// Build this folder of the repository instead of its root, as repo2docker's --subdir (only
    /// its files count and are copied into the image).
    #[arg(long, value_name = "DIR")]
    pub subdir: Option<String>,
    /// Dockerfile instructions added at the very end of kiln's Dockerfile, run as the image's
    /// user (repo2docker's --appendix; not for a repository's own Dockerfile).
    #[arg(long, value_name = "TEXT")]
    pub appendix: Option<String>,
    /// The platform to build for, as repo2docker's --platform: kiln builds for the engine's own
    /// (linux/amd64 on this machine; kiln's buildpacks install native packages); another is
    /// refused before anything is fetched.
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Build every layer again, and do not reuse an existing image.
    #[arg(long)]
    pub no_cache: bool,
    /// Print events as JSON lines ({"phase", "message", "imageName"}) on standard output.
    #[arg(long)]
    pub json_logs: bool,
    /// A PEM bundle of CA certificates that downloads during the build trust (behind a
    /// TLS-inspecting proxy); it is mounted only while a step runs, never stored in the image.
    #[arg(long, env = "SSL_CERT_FILE", value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// A Python package index (a PEP 503 simple index URL, without credentials) that pip, uv and
    /// pipenv use during the build instead of PyPI; Pipfile sources naming PyPI (also as
    /// pypi.python.org) are redirected to it. The image keeps PyPI as its default.
    #[arg(long, env = "KILN_PYPI_MIRROR", value_name = "URL")]
    pub pypi_mirror: Option<String>,
    /// An npm registry that the build's npm uses instead of registry.npmjs.org (no credentials).
    #[arg(long, env = "KILN_NPM_REGISTRY", value_name = "URL")]
    pub npm_registry: Option<String>,
    /// A Julia package server that the build's Pkg uses instead of pkg.julialang.org (no
    /// credentials).
    #[arg(long, env = "KILN_JULIA_PKG_SERVER", value_name = "URL")]
    pub julia_pkg_server: Option<String>,
    /// Network of builds and sessions (default: the engine's default network). `host` lets them
    /// reach every service on this machine's loopback: only for trusted repositories.
    #[arg(long, env = "KILN_NETWORK")]
    pub network: Option<String>,
    /// Largest repository to fetch, in bytes.
    #[arg(long, default_value_t = 2 * 1024 * 1024 * 1024)]
    pub max_repo_bytes: u64,
    /// Most files a repository may have.
    #[arg(long, default_value_t = 200_000)]
    pub max_repo_files: u64,
    /// Push the image to a registry (the environment image too), under --image-prefix.
    #[arg(long)]
    pub push: bool,
    /// Prefix of pushed image names, registry included, as BinderHub's image_prefix
    /// (e.g. registry.example.org/binder-). Credentials: KILN_REGISTRY_USERNAME and
    /// KILN_REGISTRY_PASSWORD, KILN_REGISTRY_TOKEN, or ~/.docker/config.json.
    #[arg(long, env = "KILN_IMAGE_PREFIX", requires = "push")]
    pub image_prefix: Option<String>,
    /// Registry user name (the password comes from --registry-password-stdin or
    /// KILN_REGISTRY_PASSWORD; without either, the environment or ~/.docker/config.json is used).
    #[arg(long, requires = "push")]
    pub registry_username: Option<String>,
    /// Read the registry password from standard input (never from the command line).
    #[arg(long, requires = "registry_username")]
    pub registry_password_stdin: bool,
    /// Do not reuse environment images: build the whole image on the engine and push it, as
    /// BinderHub does (for comparison and debugging).
    #[arg(long)]
    pub no_native: bool,
    /// Install what this earlier image held instead of resolving the repository's files: its Python
    /// packages (exact versions, hashes checked when its record has them), its conda lock, its
    /// versions of apt.txt's packages. What differs afterwards is reported.
    #[arg(long, value_name = "IMAGE")]
    pub locked: Option<String>,
    /// Longest a fetch may take, in seconds.
    #[arg(long, default_value_t = 600)]
    pub fetch_timeout: u64,
    #[command(flatten)]
    pub plan: PlanArgs,
}

/// This machine's platform, as the engine names it.
fn native_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("linux/{arch}")
}

fn check_platform(platform: Option<&str>) -> Result<(), kiln_builder::BuildError> {
    match platform {
        Some(p) if p != native_platform() => Err(kiln_builder::BuildError::Invalid(format!(
            "--platform {p}: kiln builds for the engine's own platform, {}, only (its buildpacks install native packages, and there is no emulation here)",
            native_platform()
        ))),
        _ => Ok(()),
    }
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

impl BuildArgs {
    pub async fn engine(&self) -> anyhow::Result<Engine> {
        let mut settings = EngineSettings::from_env();
        if self.network.is_some() {
            settings.network = self.network.clone();
        }
        Ok(Engine::connect(settings).await?)
    }

    /// The registry password: from standard input with --registry-password-stdin, else
    /// KILN_REGISTRY_PASSWORD.
    fn registry_password(&self) -> Result<String, kiln_builder::BuildError> {
        if !self.registry_password_stdin {
            return Ok(std::env::var("KILN_REGISTRY_PASSWORD").unwrap_or_default());
        }
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| {
            kiln_builder::BuildError::Invalid(format!(
                "reading the registry password from standard input: {e}"
            ))
        })?;
        Ok(line.trim_end_matches(['\n', '\r']).to_string())
    }

    /// Connect to the engine; a failure is reported as a `failed` event.
    pub async fn connect(&self, output: &mut Output) -> Option<Engine> {
        match self.engine().await {
            Ok(engine) => Some(engine),
            Err(e) => {
                kiln_builder::EventSink::emit(
                    output,
                    kiln_builder::Event::new(kiln_builder::Phase::Failed, format!("{e:#}")),
                );
                None
            }
        }
    }

    /// Build, reporting to `output`; the error has been reported as a `failed` event already.
    pub async fn build(
        &self,
        engine: &Engine,
        output: &mut Output,
    ) -> Result<Built, kiln_builder::BuildError> {
        let source = check_platform(self.platform.as_deref())
            .and_then(|()| Source::parse(&self.source))
            .map_err(|e| refused(output, e))?;
        // Checked here, not by the argument parser: its message would repeat the value, and with
        // it any credentials.
        let mirrors = kiln_buildpacks::options::PackageMirrors::new(
            self.pypi_mirror.as_deref(),
            self.npm_registry.as_deref(),
            self.julia_pkg_server.as_deref(),
        )
        .map_err(|e| refused(output, kiln_builder::BuildError::Invalid(e)))?;
        let push = match (self.push, &self.image_prefix) {
            (false, _) => None,
            (true, None) => {
                let e = kiln_builder::BuildError::Invalid("--push needs --image-prefix (or KILN_IMAGE_PREFIX), e.g. 127.0.0.1:5000/binder-".into());
                return Err(refused(output, e));
            }
            (true, Some(prefix)) => {
                let credentials = match &self.registry_username {
                    None => None,
                    Some(username) => Some(kiln_registry::Credentials::Basic {
                        username: username.clone(),
                        password: self.registry_password().map_err(|e| refused(output, e))?,
                    }),
                };
                let settings =
                    kiln_builder::PushSettings::new(prefix, credentials, !self.no_native)
                        .map_err(|e| refused(output, e))?;
                Some(settings)
            }
        };
        let operator = OperatorCredentials::from_env(match &source {
            Source::Git(git) => Some(git.url.as_str()),
            Source::Local(_) | Source::Record(_) => None,
        })
        .map_err(|e| refused(output, e))?;
        let request = BuildRequest {
            source: Some(source),
            reference: self.reference.clone(),
            default_branch_fallback: false,
            image_name: self.image_name.clone(),
            image_slug: None,
            plan_options: self.plan.options(),
            build_args: self.build_args.iter().cloned().collect::<BTreeMap<_, _>>(),
            labels: self.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
            no_cache: self.no_cache,
            ca_bundle: self.ca_bundle.clone(),
            fetch: FetchSettings {
                limits: FetchLimits {
                    max_bytes: self.max_repo_bytes,
                    max_files: self.max_repo_files,
                    timeout: Duration::from_secs(self.fetch_timeout),
                    ..FetchLimits::default()
                },
                // The command line is the operator's: any address, and their credentials for the
                // host they name (and those of KILN_GIT_CREDENTIAL_HOSTS).
                policy: kiln_net::Policy::open(),
                operator,
                records: kiln_builder::records::RecordSettings::from_env(),
            },
            push,
            locked: self.locked.clone(),
            subdir: self.subdir.clone(),
            appendix: self.appendix.clone(),
            conda: None,
            mirrors,
            resources: Default::default(),
        };
        kiln_builder::build(engine, Arc::new(LibGit), request, output).await
    }
}

impl BuildCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut output = Output::new(self.build.json_logs);
        let Some(engine) = self.build.connect(&mut output).await else {
            return Ok(ExitCode::FAILURE);
        };
        let result = self.build.build(&engine, &mut output).await;
        output.finish();
        match result {
            Ok(built) => {
                if !self.build.json_logs {
                    println!("{}", built.image);
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(_) => Ok(ExitCode::FAILURE),
        }
    }
}

/// A build refused before it started: said as its `failed` event (the command's only output), then
/// returned.
fn refused(output: &mut Output, e: kiln_builder::BuildError) -> kiln_builder::BuildError {
    kiln_builder::EventSink::emit(
        output,
        kiln_builder::Event::new(kiln_builder::Phase::Failed, e.to_string()),
    );
    e
}
