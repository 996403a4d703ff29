//! The `r` section: the TSV of [`crate::collect::R_SNIPPET`] (`version`, `repo`, `columns`, then
//! `package` rows in the order of `columns`).

use std::collections::BTreeMap;

use crate::error::SbomError;
use crate::record::{REnvironment, RPackage, RRemote, without_credentials};

pub fn parse(text: &str, first_line: usize) -> Result<REnvironment, SbomError> {
    let mut env = REnvironment::default();
    let mut columns: Vec<&str> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = Some(first_line + i);
        let mut fields = line.split('\t');
        match fields.next() {
            Some("version") => env.version = fields.next().unwrap_or_default().trim().to_string(),
            Some("repo") => {
                let name = fields.next().unwrap_or_default().trim();
                let url = fields.next().unwrap_or_default().trim();
                if !url.is_empty() {
                    env.repos.insert(name.to_string(), without_credentials(url));
                }
            }
            Some("columns") => columns = fields.collect(),
            Some("package") => {
                if columns.is_empty() {
                    return Err(SbomError::parse(
                        "r",
                        line_no,
                        "a package row before the columns",
                    ));
                }
                let row: BTreeMap<&str, &str> =
                    columns.iter().copied().zip(fields.map(str::trim)).collect();
                let get = |k: &str| row.get(k).copied().filter(|v| !v.is_empty());
                let (Some(name), Some(version)) = (get("Package"), get("Version")) else {
                    return Err(SbomError::parse(
                        "r",
                        line_no,
                        "a package without Package or Version",
                    ));
                };
                let remote = get("RemoteType").map(|kind| RRemote {
                    kind: kind.to_string(),
                    url: get("RemoteUrl").map(without_credentials),
                    repo: match (get("RemoteUsername"), get("RemoteRepo")) {
                        (Some(user), Some(repo)) => Some(format!("{user}/{repo}")),
                        (None, Some(repo)) => Some(repo.to_string()),
                        _ => None,
                    },
                    reference: get("RemoteRef").map(String::from),
                    sha: get("RemoteSha").map(String::from),
                });
                env.packages.push(RPackage {
                    name: name.to_string(),
                    version: version.to_string(),
                    library: get("LibPath").unwrap_or_default().to_string(),
                    priority: get("Priority").map(String::from),
                    built: get("Built").map(built_version),
                    repository: get("Repository").map(String::from),
                    remote,
                });
            }
            Some(other) => {
                return Err(SbomError::parse(
                    "r",
                    line_no,
                    format!("unknown row kind {other:?}"),
                ));
            }
            None => {}
        }
    }
    if env.version.is_empty() {
        return Err(SbomError::parse("r", None, "no R version"));
    }
    env.snapshot_date = env
        .repos
        .get("CRAN")
        .or_else(|| env.repos.values().next())
        .and_then(|url| snapshot_date(url));
    Ok(env)
}

/// `4.2.2` of `R 4.2.2; x86_64-pc-linux-gnu; 2024-01-01 00:00:00 UTC; unix` (a DESCRIPTION's
/// `Built`); `installed.packages()` already gives the version alone. The build time is dropped so
/// that rebuilding the same environment gives the same record.
fn built_version(built: &str) -> String {
    let first = built.split(';').next().unwrap_or(built).trim();
    first.strip_prefix("R ").unwrap_or(first).to_string()
}

/// The date of a dated snapshot URL: the last path segment that is `YYYY-MM-DD`
/// (`https://packagemanager.posit.co/cran/__linux__/bookworm/2024-06-01`).
pub fn snapshot_date(url: &str) -> Option<String> {
    url.trim_end_matches('/')
        .rsplit('/')
        .find(|s| is_date(s))
        .map(String::from)
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The snippet's output in an image with Debian's R 4.2, kiln's site profile, a CRAN package
    // from the snapshot, a Debian r-cran package and a GitHub package installed with remotes.
    const SAMPLE: &str = "version\t4.2.2\n\
repo\tCRAN\thttps://packagemanager.posit.co/cran/__linux__/bookworm/2024-06-01\n\
columns\tPackage\tVersion\tLibPath\tPriority\tBuilt\tRepository\tRemoteType\tRemoteUrl\tRemoteRepo\tRemoteUsername\tRemoteRef\tRemoteSha\n\
package\tcli\t3.6.3\t/srv/rlibs\t\t4.2.3\tRSPM\t\t\t\t\t\t\n\
package\tpraise\t1.0.0\t/srv/rlibs\t\t4.2.2\t\tgithub\t\tpraise\trladies\tHEAD\t5d1e5e0b\n\
package\tjsonlite\t1.8.4\t/usr/lib/R/site-library\t\t4.2.2\tCRAN\t\t\t\t\t\t\n\
package\tcli\t3.6.0\t/usr/lib/R/site-library\t\t4.2.2\tCRAN\t\t\t\t\t\t\n\
package\tMASS\t7.3-58.2\t/usr/lib/R/library\trecommended\t4.2.2\tCRAN\t\t\t\t\t\t\n\
package\tbase\t4.2.2\t/usr/lib/R/library\tbase\t4.2.2\t\t\t\t\t\t\t\n";

    #[test]
    fn installed_packages_tsv_gives_versions_repositories_and_the_snapshot() {
        let env = parse(SAMPLE, 1).unwrap();
        assert_eq!(env.version, "4.2.2");
        assert_eq!(env.snapshot_date.as_deref(), Some("2024-06-01"));
        assert_eq!(
            env.packages.len(),
            6,
            "rows are kept until the record dedups them"
        );
        let praise = &env.packages[1];
        let remote = praise.remote.as_ref().unwrap();
        assert_eq!(
            (remote.kind.as_str(), remote.repo.as_deref()),
            ("github", Some("rladies/praise"))
        );
        assert_eq!(remote.sha.as_deref(), Some("5d1e5e0b"));
        assert_eq!(env.packages[4].priority.as_deref(), Some("recommended"));
        assert_eq!(env.packages[0].repository.as_deref(), Some("RSPM"));
    }

    #[test]
    fn snapshot_dates_come_only_from_dated_urls() {
        assert_eq!(
            snapshot_date("https://p3m.dev/cran/2024-01-31/"),
            Some("2024-01-31".into())
        );
        assert_eq!(
            snapshot_date("https://packagemanager.posit.co/cran/__linux__/bookworm/latest"),
            None
        );
        assert_eq!(snapshot_date("https://cloud.r-project.org"), None);
        assert_eq!(
            built_version("R 4.3.1; x86_64-pc-linux-gnu; 2023-07-01 10:00:00 UTC; unix"),
            "4.3.1"
        );
    }
}
