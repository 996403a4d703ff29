//! R environments: R with IRkernel beside the Python environment, packages from a dated CRAN
//! snapshot, `install.R` before the repository copy and `DESCRIPTION` after it.
//!
//! When the requested R is the base image's Debian R (or no version is asked for), R comes from
//! Debian's packages: no download and no compiler run for R itself. Any other version is Posit's
//! build of R for Debian, installed under `/opt/R/VERSION`.

use std::collections::BTreeMap;

use crate::assemble::{Planner, apt_step, argv, python};
use crate::error::PlanError;
use crate::options::{DEFAULT_R, R_VERSIONS};
use crate::parse::runtime::Runtime;
use crate::plan::{Cache, RunAs, Step};
use crate::select::Selection;

const R_LIBS: &str = "/srv/rlibs";

pub fn plan(p: &mut Planner, selection: &Selection) -> Result<(), PlanError> {
    python::plan(p, selection)?;
    let files = p.files;
    let (asked, date) = match &selection.runtime {
        Some(Runtime::R { version, date }) => (version.clone(), date.clone()),
        _ => (None, None),
    };
    let runtime_path = files
        .runtime_txt
        .as_ref()
        .map_or("runtime.txt", |f| f.path.as_str());
    let (minor, why) = match (&asked, &date) {
        (Some(v), _) => {
            let minor: String = v.split('.').take(2).collect::<Vec<_>>().join(".");
            (minor, format!("{runtime_path} asks for it"))
        }
        (None, Some(_)) => (
            DEFAULT_R.to_string(),
            format!("{runtime_path} gives a date but no version: repo2docker's default R"),
        ),
        (None, None) => (
            p.opts.base_r.clone(),
            "nothing asks for a version: the base image's Debian R".to_string(),
        ),
    };
    let debian = minor == p.opts.base_r;
    let full = if debian {
        format!("{minor} (Debian)")
    } else {
        R_VERSIONS
            .iter()
            .find(|(m, _)| *m == minor)
            .map(|(_, full)| full.to_string())
            .ok_or_else(|| {
                PlanError::invalid(
                    runtime_path,
                    format!(
                        "R {minor} is not a version kiln can install; choose one of {}",
                        R_VERSIONS
                            .iter()
                            .map(|(m, _)| *m)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?
            .to_string()
    };
    p.decide("R", &full, &why);
    p.decide(
        "RStudio and Shiny Server",
        "not installed",
        "neither is packaged for Debian, and kiln downloads no server binaries: R runs as the IR kernel in JupyterLab and the notebook interface (the shiny R package installs like any other)",
    );

    let locked = p
        .opts
        .locked
        .as_ref()
        .and_then(|l| l.r_snapshot.as_ref().map(|d| (l.from.clone(), d.clone())));
    let snapshot = match (&locked, &date) {
        (Some((_, d)), _) | (None, Some(d)) => d.clone(),
        (None, None) => "latest".to_string(),
    };
    let cran = p.opts.cran_url.replace("{date}", &snapshot);
    p.decide(
        "CRAN snapshot",
        &cran,
        &match (&locked, &date) {
            (Some((from, d)), _) => format!("--locked {from}: the snapshot its R packages came from ({d})"),
            (None, Some(d)) => format!("{runtime_path} pins packages to the snapshot of {d}"),
            (None, None) => "no date in runtime.txt: the latest snapshot (write r-X.Y-YYYY-MM-DD to make installs reproducible)".to_string(),
        },
    );

    let mut r_packages = vec!["r-base-core", "r-recommended"];
    let needs_build_tools = files.install_r.is_some() || files.description.is_some();
    if debian {
        r_packages.push("r-cran-irkernel");
        if files.description.is_some() {
            r_packages.push("r-cran-remotes");
        }
        if needs_build_tools {
            r_packages.push("r-base-dev");
        }
        p.runtime_steps.push(apt_step(
            &format!("R {minor} from Debian, with IRkernel"),
            &r_packages.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ));
    } else {
        p.add_base_packages(&["curl"]);
        let deb = format!("https://cdn.posit.co/r/debian-12/pkgs/r-{full}_1_amd64.deb");
        let mut install = apt_step(
            &format!("R {full} (Posit's build for Debian)"),
            &["/tmp/r.deb".to_string()],
        );
        install.commands.insert(
            0,
            argv(&[
                "curl",
                "--fail",
                "--silent",
                "--show-error",
                "--location",
                "--output",
                "/tmp/r.deb",
                &deb,
            ]),
        );
        if needs_build_tools {
            install.commands[2].push("build-essential".into());
        }
        install.commands.push(argv(&["rm", "/tmp/r.deb"]));
        for tool in ["R", "Rscript"] {
            install.commands.push(argv(&[
                "ln",
                "-sf",
                &format!("/opt/R/{full}/bin/{tool}"),
                &format!("/usr/local/bin/{tool}"),
            ]));
        }
        p.runtime_steps.push(install);
        p.env
            .insert("R_HOME".into(), format!("/opt/R/{full}/lib/R"));
    }

    let profile = p.helper_file("Rprofile.site", &rprofile(&cran), 0o644);
    p.env.insert("R_PROFILE".into(), profile);
    p.env.insert("R_LIBS_USER".into(), R_LIBS.into());
    let mut libs = p.owned_dir_step("R library folder", R_LIBS);
    if !debian {
        libs.commands.push(argv(&[
            "Rscript",
            "-e",
            "install.packages(c('IRkernel', 'remotes'), lib = .Library)",
        ]));
        libs.commands.push(argv(&[
            "Rscript",
            "-e",
            &format!(
                "IRkernel::installspec(prefix = '{}', user = FALSE)",
                python::VENV
            ),
        ]));
        libs.network = true;
    }
    p.runtime_steps.push(libs);

    let needs_runner = files.install_r.is_some() || files.description.is_some();
    let runner = needs_runner.then(|| {
        p.helper(
            "install-r-packages.R",
            include_str!("../scripts/install-r-packages.R"),
        )
    });
    if let (Some(install_r), Some(runner)) = (&files.install_r, &runner) {
        p.steps.push(Step {
            name: format!("{} (failed installs fail the build)", install_r.path),
            run_as: RunAs::User,
            inputs: vec![install_r.path.clone()],
            commands: vec![argv(&["Rscript", runner, &p.in_repo(&install_r.path)])],
            env: BTreeMap::new(),
            caches: vec![Cache::R],
            network: true,
        });
    }
    if let (Some(description), Some(runner)) = (&files.description, &runner) {
        p.decide(
            &description.path,
            "remotes::install_local() after the copy",
            "an R package installs from its source, as in repo2docker",
        );
        p.after_copy.push(Step {
            name: format!("{} (the repository's R package)", description.path),
            run_as: RunAs::User,
            inputs: vec![],
            commands: vec![argv(&["Rscript", runner, "--local"])],
            env: BTreeMap::new(),
            caches: vec![Cache::R],
            network: true,
        });
    }
    Ok(())
}

/// The site profile: the CRAN snapshot, and parallel installs.
fn rprofile(cran: &str) -> String {
    let quoted = cran.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "# kiln: R packages come from this CRAN snapshot.\n\
         local({{\n    options(repos = c(CRAN = \"{quoted}\"))\n    options(Ncpus = max(1L, parallel::detectCores()))\n}})\n"
    )
}
