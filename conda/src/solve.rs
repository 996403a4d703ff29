//! Solving an environment on the host: the repodata gateway (with its persistent cache) loads the
//! channels, resolvo picks the packages, for the target image's virtual packages (not the host's).

use std::str::FromStr;
use std::time::Instant;

use rattler_conda_types::{
    Channel as RattlerChannel, GenericVirtualPackage, MatchSpec, PackageName, ParseStrictness,
    Subdir, Version,
};
use rattler_repodata_gateway::Gateway;
use rattler_solve::{SolveError, SolverImpl, SolverTask};

use crate::error::CondaError;
use crate::lock::{Lock, LockedPackage};
use crate::settings::CondaSettings;

/// What to solve: the channels and specs of an `environment.yml` (plus kiln's additions).
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Channel names or URLs, in priority order.
    pub channels: Vec<String>,
    /// Match specs (`python=3.11`, `numpy >=2`).
    pub specs: Vec<String>,
}

/// The longest solver explanation kept in an error, in lines.
const MAX_EXPLANATION_LINES: usize = 40;

/// Solve `request` for linux-64 and return the lock.
pub async fn solve(settings: &CondaSettings, request: &Request) -> Result<Lock, CondaError> {
    if request.channels.is_empty() {
        return Err(CondaError::Invalid(
            "no conda channel to solve with: name one under `channels:` in environment.yml".into(),
        ));
    }
    let channels = request
        .channels
        .iter()
        .map(|c| settings.channel(c))
        .collect::<Result<Vec<_>, _>>()?;
    let specs = request
        .specs
        .iter()
        .map(|s| {
            MatchSpec::from_str(s, ParseStrictness::Lenient).map_err(|e| {
                CondaError::Invalid(format!("{s:?} is not a valid conda package spec: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let virtual_packages = virtual_packages(settings)?;
    for channel in &channels {
        settings.check_url(&channel.fetch)?;
    }

    let started = Instant::now();
    let gateway = Gateway::builder()
        .with_cache_dir(settings.repodata_cache_dir())
        .with_package_cache(rattler_cache::package_cache::PackageCache::new(
            settings.package_cache_dir(),
        ))
        .with_client(settings.client()?)
        .finish();
    let sources: Vec<RattlerChannel> = channels
        .iter()
        .map(|c| RattlerChannel::from_url(c.fetch.clone()))
        .collect();
    let repodata = gateway
        .query(sources, [Subdir::Linux64, Subdir::NoArch], specs.clone())
        .recursive(true)
        .await
        .map_err(|e| CondaError::Channel {
            channel: request.channels.join(", "),
            url: channels
                .iter()
                .map(|c| kiln_net::error::redact(&c.fetch))
                .collect::<Vec<_>>()
                .join(", "),
            reason: chain(&e),
        })?
        .repodata;
    tracing::debug!("conda repodata loaded in {:?}", started.elapsed());

    let task = SolverTask {
        virtual_packages,
        specs,
        ..SolverTask::from_iter(&repodata)
    };
    let solved = rattler_solve::resolvo::Solver
        .solve(task)
        .map_err(|e| match e {
            SolveError::Unsolvable(lines) => CondaError::Unsolvable(shorten(&lines.join("\n"))),
            other => CondaError::Unsolvable(shorten(&other.to_string())),
        })?;

    let mut packages = Vec::new();
    for record in solved.records {
        let channel = channels
            .iter()
            .find(|c| record.url.as_str().starts_with(c.fetch.as_str()));
        let url = match channel {
            Some(c) => c.canonical_url(&record.url),
            None => record.url.clone(),
        };
        let sha256 = record.package_record.sha256.ok_or_else(|| {
            CondaError::Invalid(format!(
                "{}: the channel gives no sha256 for it, so it cannot be locked",
                record.url
            ))
        })?;
        let mut package =
            LockedPackage::from_url(url, &hex::encode(sha256)).map_err(CondaError::Invalid)?;
        // The record knows better than the file name.
        package.name = record.package_record.name.as_normalized().to_string();
        package.version = record.package_record.version.to_string();
        package.build = record.package_record.build.to_string();
        package.subdir = record.package_record.subdir.clone();
        packages.push(package);
    }
    Ok(Lock::new(packages))
}

fn virtual_packages(settings: &CondaSettings) -> Result<Vec<GenericVirtualPackage>, CondaError> {
    settings
        .virtual_packages
        .iter()
        .map(|(name, version, build)| {
            let bad = |e: String| CondaError::Invalid(format!("virtual package {name}: {e}"));
            Ok(GenericVirtualPackage {
                name: PackageName::from_str(name).map_err(|e| bad(e.to_string()))?,
                version: Version::from_str(version).map_err(|e| bad(e.to_string()))?,
                build_string: build.parse().map_err(|e| bad(format!("{e:?}")))?,
            })
        })
        .collect()
}

/// An error with its causes, on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

fn shorten(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= MAX_EXPLANATION_LINES {
        return text.trim_end().to_string();
    }
    format!(
        "{}\n… ({} more lines)",
        lines[..MAX_EXPLANATION_LINES].join("\n"),
        lines.len() - MAX_EXPLANATION_LINES
    )
}
