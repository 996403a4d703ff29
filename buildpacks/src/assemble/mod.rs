//! Turning the selected buildpacks into a plan: the parts every buildpack shares (base packages, the
//! user, `apt.txt`, `postBuild`, `start`, the runtime) live here; each language has its own file.

mod conda;
mod julia;
mod nix;
mod python;
mod r;

use std::collections::BTreeMap;

use crate::error::PlanError;
use crate::files::{ConfigFile, RepoFiles};
use crate::options::PlanOptions;
use crate::parse::apt;
use crate::plan::{
    Build, Buildpack, BuildpackUse, Cache, Decision, Environment, GeneratedFile, Layers,
    RepoDockerfile, RepositoryCopy, RunAs, Runtime, Step, User,
};
use crate::select::Selection;

pub const ENTRYPOINT: &str = "/usr/local/bin/kiln-entrypoint";
pub const KILN_LIB: &str = "/usr/local/lib/kiln";
/// The PATH of a Debian image, after the environment's own entries.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// From `common_files`: the `apt.txt` packages, the `start` script, the files to make executable.
type CommonFiles = (Vec<String>, Option<String>, Vec<String>);

/// A plan being put together.
pub(crate) struct Planner<'a> {
    pub files: &'a RepoFiles,
    pub opts: &'a PlanOptions,
    pub decisions: Vec<Decision>,
    /// Debian packages kiln's base step installs.
    pub base_packages: Vec<&'static str>,
    pub env: BTreeMap<String, String>,
    pub generated: Vec<GeneratedFile>,
    /// Steps after the base packages and the user, before `apt.txt`.
    pub runtime_steps: Vec<Step>,
    /// Programs only building needs (see [`crate::plan::Tool`]).
    pub tools: Vec<crate::plan::Tool>,
    pub steps: Vec<Step>,
    /// The conda environment kiln installs natively, if any.
    pub conda: Option<crate::plan::CondaEnvironment>,
    pub after_copy: Vec<Step>,
    /// PATH entries in front of the user's `.local/bin` and the system PATH.
    pub path: Vec<String>,
    pub runtime_env: BTreeMap<String, String>,
    pub command: Vec<String>,
    /// The Python environment at `/srv/venv` gets its lock with hashes after every environment
    /// step; the paths (in the image) are requirements files whose index options it uses.
    pub python_lock: Option<Vec<String>>,
}

pub(crate) fn assemble(
    files: &RepoFiles,
    selection: &Selection,
    opts: &PlanOptions,
) -> Result<(Vec<BuildpackUse>, Vec<Decision>, Build), PlanError> {
    let mut uses = selection.uses.clone();
    if let Some(dockerfile) = &files.dockerfile {
        let mut decisions = files.ignored.clone();
        decisions.push(Decision {
            topic: "environment reuse".into(),
            value: "none".into(),
            reason: "a Dockerfile may read any file of the repository, so its image is built whole"
                .into(),
        });
        return Ok((
            uses,
            decisions,
            Build::Dockerfile(RepoDockerfile {
                path: dockerfile.path.clone(),
                content: dockerfile.text.clone(),
            }),
        ));
    }
    validate_user(opts)?;

    let mut planner = Planner::new(files, opts);
    planner.decisions.extend(files.ignored.iter().cloned());
    let primary = selection.primary();
    // The buildpacks whose files are honoured beside the primary one.
    let honoured: &[Buildpack] = match primary {
        Buildpack::Julia | Buildpack::R => &[Buildpack::Python],
        _ => &[],
    };
    for ignored in uses[1..].iter().filter(|u| !honoured.contains(&u.name)) {
        planner.decide(
            &format!("{} buildpack", ignored.name),
            "ignored",
            &format!(
                "{} is primary; as in repo2docker, it does not combine with {} ({})",
                primary, ignored.name, ignored.reason
            ),
        );
    }
    uses.retain(|u| u.name == primary || honoured.contains(&u.name));

    match primary {
        Buildpack::Python => python::plan(&mut planner, selection)?,
        Buildpack::Pipfile => python::plan_pipfile(&mut planner, selection)?,
        Buildpack::Conda => {
            if conda::plan(&mut planner, selection)? {
                let path = files
                    .environment_yml
                    .as_ref()
                    .map_or("", |f| f.path.as_str());
                uses.push(BuildpackUse {
                    name: Buildpack::R,
                    reason: format!("{path} lists R packages (r-…): the R kernel is added"),
                });
            }
        }
        Buildpack::R => r::plan(&mut planner, selection)?,
        Buildpack::Julia => julia::plan(&mut planner, selection)?,
        Buildpack::Nix => nix::plan(&mut planner)?,
        Buildpack::Dockerfile => unreachable!("handled above"),
    }
    let common = planner.common_files()?;
    let decisions = std::mem::take(&mut planner.decisions);
    let layers = planner.finish(&uses, common)?;
    Ok((uses, decisions, Build::Layers(Box::new(layers))))
}

fn validate_user(opts: &PlanOptions) -> Result<(), PlanError> {
    let name_ok = !opts.user.is_empty()
        && opts.user.len() <= 32
        && opts.user.as_bytes()[0].is_ascii_lowercase()
        && opts
            .user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(PlanError::invalid(
            "options",
            format!(
                "user name {:?} is not a valid Linux user name (lowercase letters, digits, _ and -)",
                opts.user
            ),
        ));
    }
    if opts.uid == 0 {
        return Err(PlanError::invalid(
            "options",
            "the image's user cannot be root (uid 0); choose a uid such as 1000",
        ));
    }
    if let Some(dir) = &opts.repo_dir {
        let plain = dir.starts_with('/')
            && dir.trim_end_matches('/').len() > 1
            && dir
                .split('/')
                .skip(1)
                .all(|p| !p.is_empty() && p != "." && p != "..")
            && dir
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
        let system = [
            "/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr", "/var",
        ]
        .iter()
        .any(|s| dir == s || dir.starts_with(&format!("{s}/")));
        if !plain || system {
            return Err(PlanError::invalid(
                "options",
                format!(
                    "the repository folder {dir:?} must be an absolute path of letters, digits, '-', '_' and '.', outside the system's folders (such as /srv/repo)"
                ),
            ));
        }
    }
    Ok(())
}

impl<'a> Planner<'a> {
    fn new(files: &'a RepoFiles, opts: &'a PlanOptions) -> Self {
        let home = opts.home();
        let env = BTreeMap::from([
            ("DEBIAN_FRONTEND".into(), "noninteractive".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("LC_ALL".into(), "C.UTF-8".into()),
            ("SHELL".into(), "/bin/bash".into()),
            ("USER".into(), opts.user.clone()),
            ("NB_USER".into(), opts.user.clone()),
            ("NB_UID".into(), opts.uid.to_string()),
            ("HOME".into(), home.clone()),
            ("REPO_DIR".into(), opts.repo_dir()),
            ("APP_BASE".into(), "/srv".into()),
        ]);
        Planner {
            files,
            opts,
            decisions: Vec::new(),
            base_packages: vec!["ca-certificates", "less", "unzip", "gettext-base"],
            env,
            generated: vec![script(ENTRYPOINT, include_str!("../scripts/entrypoint"))],
            runtime_steps: Vec::new(),
            tools: Vec::new(),
            steps: Vec::new(),
            conda: None,
            after_copy: Vec::new(),
            path: Vec::new(),
            runtime_env: BTreeMap::from([("PYTHONUNBUFFERED".into(), "1".into())]),
            command: vec!["jupyter".into(), "lab".into(), "--ip=0.0.0.0".into()],
            python_lock: None,
        }
    }

    pub fn decide(&mut self, topic: &str, value: &str, reason: &str) {
        self.decisions.push(Decision {
            topic: topic.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        });
    }

    pub fn home(&self) -> String {
        self.opts.home()
    }

    /// Where the repository lands in the image.
    pub fn repo_dir(&self) -> String {
        self.opts.repo_dir()
    }

    /// Where a repository file lands in the image.
    pub fn in_repo(&self, rel: &str) -> String {
        format!("{}/{rel}", self.repo_dir())
    }

    /// The folder whose files count, in the image.
    pub fn config_dir_in_image(&self) -> String {
        match &self.files.config_dir {
            Some(dir) => self.in_repo(dir),
            None => self.repo_dir(),
        }
    }

    pub fn add_base_packages(&mut self, packages: &[&'static str]) {
        for p in packages {
            if !self.base_packages.contains(p) {
                self.base_packages.push(p);
            }
        }
    }

    /// Add a generated helper script under `/usr/local/lib/kiln/` and return its path in the image.
    pub fn helper(&mut self, name: &str, content: &str) -> String {
        self.helper_file(name, content, 0o755)
    }

    /// Add a generated file under `/usr/local/lib/kiln/` and return its path in the image.
    pub fn helper_file(&mut self, name: &str, content: &str, mode: u32) -> String {
        let dest = format!("{KILN_LIB}/{name}");
        if !self.generated.iter().any(|g| g.dest == dest) {
            self.generated.push(GeneratedFile {
                dest: dest.clone(),
                mode,
                content: content.to_string(),
            });
        }
        dest
    }

    /// A root step that creates `dir` owned by the image's user.
    pub fn owned_dir_step(&self, name: &str, dir: &str) -> Step {
        let uid = self.opts.uid.to_string();
        Step {
            name: name.to_string(),
            run_as: RunAs::Root,
            inputs: vec![],
            commands: vec![argv(&["install", "-d", "-o", &uid, "-g", &uid, dir])],
            env: BTreeMap::new(),
            caches: vec![],
            network: false,
        }
    }

    /// `apt.txt`, `postBuild` and `start`: honoured by every buildpack but the Dockerfile one.
    fn common_files(&mut self) -> Result<CommonFiles, PlanError> {
        let mut system_packages = match &self.files.apt_txt {
            Some(ConfigFile { path, text }) => {
                let packages = apt::parse(path, text)?;
                if self.opts.base_image == crate::options::DEFAULT_BASE_IMAGE {
                    apt::check_bookworm_names(path, text)?;
                }
                packages
            }
            None => Vec::new(),
        };
        if let Some(locked) = self.opts.locked.clone()
            && !system_packages.is_empty()
        {
            let (mut pinned, mut unknown) = (Vec::new(), Vec::new());
            for package in &mut system_packages {
                if package.contains('=') {
                    continue;
                }
                match locked.deb.get(package.as_str()) {
                    Some(version) => {
                        pinned.push(format!("{package}={version}"));
                        *package = format!("{package}={version}");
                    }
                    None => unknown.push(package.clone()),
                }
            }
            let mut reason = format!("--locked {}: the versions that image held", locked.from);
            if !unknown.is_empty() {
                reason.push_str(&format!(
                    "; not in it, so not pinned: {}",
                    unknown.join(" ")
                ));
            }
            self.decide("apt.txt", &pinned.join(" "), &reason);
        }
        let mut executables = Vec::new();
        if let Some(post_build) = self.files.post_build.clone() {
            if let Some((line, npm)) = self.files.post_build_node.clone() {
                let packages: &[&'static str] = if npm { &["nodejs", "npm"] } else { &["nodejs"] };
                self.add_base_packages(packages);
                self.decide(
                    "nodejs",
                    &format!("{} from Debian", packages.join(" and ")),
                    &format!(
                        "{post_build} needs Node.js ({line}); repo2docker's default environment has it"
                    ),
                );
            }
            executables.push(post_build.clone());
            self.after_copy.push(Step {
                name: format!("{post_build} (as the user, after the repository copy)"),
                run_as: RunAs::User,
                inputs: vec![],
                commands: vec![vec![self.in_repo(&post_build)]],
                env: BTreeMap::new(),
                caches: vec![],
                network: true,
            });
        }
        let start = self.files.start.clone();
        if let Some(start) = &start {
            executables.push(start.clone());
            self.runtime_env
                .insert("KILN_START".into(), self.in_repo(start));
        }
        Ok((system_packages, start, executables))
    }

    /// [`PlanOptions::refresh`]: the steps that download what the repository asks for (after the
    /// shared runtime and Jupyter steps) get it as `KILN_REFRESH`, so they run again and the
    /// environment key moves; the conda environment's packages come from its lock instead.
    fn refresh(&mut self) {
        let Some(refresh) = self.opts.refresh.clone() else {
            return;
        };
        let mut refreshed = 0;
        for step in self.steps.iter_mut().chain(self.after_copy.iter_mut()) {
            if step.network {
                step.env.insert("KILN_REFRESH".into(), refresh.clone());
                refreshed += 1;
            }
        }
        self.decide(
            "refresh",
            &refresh,
            &format!("the repository's dependencies are resolved again (a catalogue entry's rebuild.lock_change): {refreshed} steps that download run again"),
        );
    }

    fn finish(mut self, uses: &[BuildpackUse], common: CommonFiles) -> Result<Layers, PlanError> {
        let (system_packages, start, executables) = common;
        // The Python lock is made once every environment step has run.
        if let Some(reads) = self.python_lock.take() {
            let step = python::lock_step(&mut self, &reads);
            self.steps.push(step);
        }
        self.refresh();
        let home = self.home();
        let repo_dir = self.repo_dir();
        let mut path = std::mem::take(&mut self.path);
        path.push(format!("{home}/.local/bin"));
        path.push(SYSTEM_PATH.to_string());
        self.env.insert("PATH".into(), path.join(":"));

        let mut base_steps = vec![
            apt_step(
                &format!("kiln base packages: {}", self.base_packages.join(" ")),
                &self
                    .base_packages
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>(),
            ),
            Step {
                name: format!("user {} (uid {})", self.opts.user, self.opts.uid),
                run_as: RunAs::Root,
                inputs: vec![],
                commands: vec![
                    vec![
                        format!("{KILN_LIB}/create-user"),
                        self.opts.user.clone(),
                        self.opts.uid.to_string(),
                    ],
                    vec![
                        "chown".into(),
                        format!("{0}:{0}", self.opts.uid),
                        "/srv".into(),
                    ],
                ]
                .into_iter()
                .chain(repo_dir_commands(&repo_dir, &home, self.opts.uid))
                .collect(),
                env: BTreeMap::new(),
                caches: vec![],
                network: false,
            },
        ];
        self.generated.push(script(
            &format!("{KILN_LIB}/create-user"),
            include_str!("../scripts/create-user"),
        ));
        base_steps.append(&mut self.runtime_steps);

        let mut labels = BTreeMap::new();
        labels.insert(
            "io.kiln.buildpacks".to_string(),
            uses.iter()
                .map(|u| u.name.name())
                .collect::<Vec<_>>()
                .join(","),
        );
        self.generated.sort_by(|a, b| a.dest.cmp(&b.dest));
        Ok(Layers {
            environment: Environment {
                base_image: self.opts.base_image.clone(),
                user: User {
                    name: self.opts.user.clone(),
                    uid: self.opts.uid,
                    home: home.clone(),
                },
                env: self.env,
                files: self.generated,
                base_steps,
                system_packages,
                conda: self.conda,
                steps: self.steps,
                tools: self.tools,
            },
            repository: RepositoryCopy {
                dest: repo_dir.clone(),
                ignore_file: self.files.ignore_file.clone(),
                executables,
            },
            after_copy: self.after_copy,
            runtime: Runtime {
                workdir: repo_dir,
                env: self.runtime_env,
                entrypoint: vec![ENTRYPOINT.to_string()],
                command: self.command,
                start,
                labels,
                expose: 8888,
            },
        })
    }
}

/// A repository folder of its own (`--target-repo-dir`) is made, and owned by the user.
fn repo_dir_commands(repo_dir: &str, home: &str, uid: u32) -> Vec<Vec<String>> {
    if repo_dir == home {
        return Vec::new();
    }
    vec![
        argv(&["mkdir", "-p", repo_dir]),
        argv(&["chown", &format!("{uid}:{uid}"), repo_dir]),
    ]
}

/// A generated executable script.
fn script(dest: &str, content: &str) -> GeneratedFile {
    GeneratedFile {
        dest: dest.to_string(),
        mode: 0o755,
        content: content.to_string(),
    }
}

/// Install Debian packages as root, leaving no package lists or archives in the layer.
pub(crate) fn apt_step(name: &str, packages: &[String]) -> Step {
    let mut install: Vec<String> = [
        "apt-get",
        "install",
        "--yes",
        "--quiet",
        "--no-install-recommends",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    install.extend(packages.iter().cloned());
    Step {
        name: name.to_string(),
        run_as: RunAs::Root,
        inputs: vec![],
        // The renderer removes the package lists and archives afterwards (see `Cache::Apt`).
        commands: vec![argv(&["apt-get", "update", "--quiet"]), install],
        env: BTreeMap::new(),
        caches: vec![Cache::Apt],
        network: true,
    }
}

pub(crate) fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}
