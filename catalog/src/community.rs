//! A community: a course, a lab or a network whose hub offers curated environments. Each is one
//! TOML file in the communities folder, so it can live in git: who it is, where its images go,
//! its hub, who administers it, its quotas, what "build your own" admits, and its catalogue.
//!
//! No secret is written in the file: the admin token is given as its SHA-256, and the hub's API
//! token as the name of the environment variable that holds it.

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::entry::Entry;

/// One community, as its file says.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Community {
    /// `[a-z0-9-]`, 1 to 40 characters; by default the file's name without `.toml`. Requests name
    /// the community by it (`/communities/<id>/...`).
    #[serde(default)]
    pub id: String,
    /// What people see ("Physics 101").
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Where the community's images are pushed (`registry/path/`); by default the service's
    /// `KILN_IMAGE_PREFIX` followed by `<id>-`.
    #[serde(default)]
    pub registry_prefix: Option<String>,
    /// Host names that name the community (`physics.kiln.example`, with a port when it is
    /// not the default): a request to one of them is the community's, as if its path started
    /// with `/communities/<id>/`.
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub hub: Option<Hub>,
    #[serde(default)]
    pub admins: Admins,
    #[serde(default)]
    pub quotas: Quotas,
    #[serde(default)]
    pub build_your_own: BuildPolicy,
    #[serde(default)]
    pub retention: Retention,
    /// The catalogue, `[[entry]]` tables.
    #[serde(default, rename = "entry")]
    pub entries: Vec<Entry>,
}

/// The community's JupyterHub: launches through the community's routes start there. Its API
/// token is never in the file: the operator sets it in `KILN_COMMUNITY_<ID>_HUB_TOKEN` (see
/// [`Community::hub_token_variable`]), so a community file can name only its own token.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hub {
    /// Its public address (`https://hub.example.org/`).
    pub url: String,
    /// Its API, when not `<url>hub/api/` (such as the hub's address inside a cluster).
    #[serde(default)]
    pub api_url: Option<String>,
}

/// Who administers the community's catalogue.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Admins {
    /// Hub users.
    #[serde(default)]
    pub users: Vec<String>,
    /// Hub groups whose members administer it.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The SHA-256 (hex) of an admin token, for scripts and CI (`printf %s TOKEN | sha256sum`).
    #[serde(default)]
    pub token_sha256: Option<String>,
}

impl Admins {
    /// Whether `token` is the admin token (compared as digests, in constant time).
    pub fn token_matches(&self, token: &str) -> bool {
        let Some(expected) = self
            .token_sha256
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
        else {
            return false;
        };
        let given = sha2::Sha256::digest(token.as_bytes());
        expected.len() == given.len()
            && expected
                .iter()
                .zip(given.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// Whether a hub user (with their groups) administers the community.
    pub fn admits_user(&self, user: &str, groups: &[String]) -> bool {
        self.users.iter().any(|u| u == user) || groups.iter().any(|g| self.groups.contains(g))
    }
}

/// What the community may use of the shared service. `None`: the service's own limit.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Catalogue builds of this community running at once.
    #[serde(default)]
    pub concurrent_builds: Option<usize>,
    /// Catalogue builds started in a day (UTC).
    #[serde(default)]
    pub builds_per_day: Option<u32>,
    /// Sessions of the community's users running at once.
    #[serde(default)]
    pub sessions: Option<usize>,
}

/// When the service deletes, on its own, the images no version keeps (as `POST
/// .../retention?apply=true` does when an admin asks).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Five-field cron, UTC (`"0 4 * * 0"`: Sundays at 04:00). None: only when asked.
    #[serde(default)]
    pub schedule: Option<String>,
}

/// The key under which retention's runs are recorded and held beside the entries' checks (not a
/// valid entry slug, so it names no entry).
pub const RETENTION_KEY: &str = "@retention";

/// What "build your own" admits for the community's users.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BuildPolicy {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// BinderHub provider names (`gh`, `gl`, `git`, `zenodo`, ...); empty: every provider.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Repository patterns (`https://github.com/org/*`); empty: every repository.
    #[serde(default)]
    pub repositories: Vec<String>,
}

impl Default for BuildPolicy {
    fn default() -> Self {
        BuildPolicy {
            enabled: true,
            providers: Vec::new(),
            repositories: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Whether `host` is a host name a community may claim: lower-case letters, digits, `-` and `.`,
/// with an optional `:port`; 1 to 253 characters.
pub fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    (1..=253).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['.', '-'])
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// Whether `id` is a valid community or entry id: `[a-z0-9-]`, 1 to 40 characters, not starting
/// or ending with `-`.
pub fn valid_id(id: &str) -> bool {
    (1..=40).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

impl Community {
    /// The entry with this slug.
    pub fn entry(&self, slug: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.slug == slug)
    }

    /// The environment variable holding the API token of the community's hub:
    /// `KILN_COMMUNITY_<ID>_HUB_TOKEN`, the id in capitals with `-` as `_`.
    pub fn hub_token_variable(&self) -> String {
        format!(
            "KILN_COMMUNITY_{}_HUB_TOKEN",
            self.id.to_ascii_uppercase().replace('-', "_")
        )
    }

    /// Where its images go: its own prefix, or `service_prefix` + `<id>-`.
    pub fn prefix(&self, service_prefix: Option<&str>) -> Option<String> {
        match (&self.registry_prefix, service_prefix) {
            (Some(own), _) => Some(own.clone()),
            (None, Some(service)) => Some(format!("{service}{}-", self.id)),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_slugs() {
        for good in ["physics-101", "a", "lab2"] {
            assert!(valid_id(good), "{good}");
        }
        for bad in ["", "-a", "a-", "Physics", "a_b", "a/b", &"x".repeat(41)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_admin_token_is_compared_by_its_digest() {
        let admins = Admins {
            // printf %s s3cret | sha256sum
            token_sha256: Some(hex::encode(sha2::Sha256::digest(b"s3cret"))),
            ..Admins::default()
        };
        assert!(admins.token_matches("s3cret"));
        assert!(!admins.token_matches("s3cre"));
        assert!(!Admins::default().token_matches(""));
    }
}
