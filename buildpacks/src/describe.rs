//! The human-readable form of a plan (`kiln plan PATH`).

use std::fmt::Write;

use crate::plan::{Build, BuildPlan, RunAs, Step};

pub fn describe(plan: &BuildPlan) -> String {
    let mut out = String::new();
    let o = &mut out;
    let _ = writeln!(o, "Buildpacks (primary first):");
    for (i, b) in plan.buildpacks.iter().enumerate() {
        let role = if i == 0 { "primary" } else { "also" };
        let _ = writeln!(o, "  {:<10} {role:<8} {}", b.name.name(), b.reason);
    }
    if let Some(dir) = &plan.config_dir {
        let _ = writeln!(
            o,
            "Configuration folder: {dir}/ (only files inside it count)"
        );
    }
    if !plan.decisions.is_empty() {
        let _ = writeln!(o, "Decisions:");
        for d in &plan.decisions {
            let _ = writeln!(o, "  {}: {}\n      because {}", d.topic, d.value, d.reason);
        }
    }
    match &plan.build {
        Build::Dockerfile(repo) => {
            let _ = writeln!(
                o,
                "Build: the repository's {} as is (context: the repository root)",
                repo.path
            );
        }
        Build::Layers(layers) => {
            let env = &layers.environment;
            let _ = writeln!(o, "Layers, in build order:");
            let _ = writeln!(o, "  base image        {}", env.base_image);
            let mut n = 0;
            let step = |o: &mut String, n: &mut usize, s: &Step| {
                *n += 1;
                let who = match s.run_as {
                    RunAs::Root => "root",
                    RunAs::User => "user",
                };
                let _ = write!(o, "  {:>2}. [{who}] {}", n, s.name);
                if !s.inputs.is_empty() {
                    let _ = write!(o, "  (reads {})", s.inputs.join(", "));
                }
                let _ = writeln!(o);
            };
            for s in &env.base_steps {
                step(o, &mut n, s);
            }
            if !env.system_packages.is_empty() {
                n += 1;
                let _ = writeln!(
                    o,
                    "  {n:>2}. [root] apt.txt: {}",
                    env.system_packages.join(" ")
                );
            }
            if let Some(conda) = &env.conda {
                n += 1;
                let source = match &conda.lock_file {
                    Some(lock) => format!("the lock {lock}, installed as is"),
                    None => format!("{} solved by kiln with rattler", conda.file),
                };
                let _ = writeln!(
                    o,
                    "  {n:>2}. [kiln] conda environment at {}: {source}, added as layers without a container",
                    conda.prefix
                );
                let _ = writeln!(o, "      channels: {}", conda.channels.join(", "));
                let _ = writeln!(o, "      specs: {}", conda.specs.join(", "));
            }
            for s in &env.steps {
                step(o, &mut n, s);
            }
            let ignore = layers
                .repository
                .ignore_file
                .as_ref()
                .map(|f| format!(" (minus {f})"))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  --  the repository -> {}{ignore}",
                layers.repository.dest
            );
            for s in &layers.after_copy {
                step(o, &mut n, s);
            }
            let rt = &layers.runtime;
            let _ = writeln!(o, "Runtime:");
            let _ = writeln!(
                o,
                "  user        {} (uid {}), working directory {}",
                env.user.name, env.user.uid, rt.workdir
            );
            let _ = writeln!(o, "  entrypoint  {}", rt.entrypoint.join(" "));
            let _ = writeln!(o, "  command     {}", rt.command.join(" "));
            if let Some(start) = &rt.start {
                let _ = writeln!(o, "  start       {start} wraps the command");
            }
            let _ = writeln!(
                o,
                "  PATH        {}",
                env.env.get("PATH").map_or("", String::as_str)
            );
        }
    }
    let _ = writeln!(
        o,
        "Environment key: {}",
        plan.environment_key
            .as_deref()
            .unwrap_or("none (a Dockerfile may read any file)")
    );
    if let Some(conda) = plan.layers().and_then(|l| l.environment.conda.as_ref()) {
        match &conda.lock {
            Some(lock) if lock.lines().any(|l| l.trim() == "@EXPLICIT") => {
                let _ = writeln!(
                    o,
                    "Conda lock (stored in the image at {}/conda-meta/kiln-lock.txt):",
                    conda.prefix
                );
                for line in lock.lines().filter(|l| !l.trim().is_empty()) {
                    let _ = writeln!(o, "  {line}");
                }
            }
            Some(_) => {
                let _ = writeln!(
                    o,
                    "Conda lock: {}",
                    conda.lock_file.as_deref().unwrap_or("shipped")
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "Conda lock: not solved yet (kiln plan solves it when the channels can be reached)"
                );
            }
        }
    }
    out
}
