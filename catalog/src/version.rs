//! Versions of an entry, and the freshness decision: does a check build a new one?
//!
//! A version's number is reserved when its build starts, so a tag is never given to two builds
//! (`v<n>-<commit>`), even when a build is interrupted; the spawn form names images by digest.

use serde::{Deserialize, Serialize};

use crate::entry::Entry;

/// One build of an entry.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Version {
    pub number: u32,
    /// The commit (or the record's version) it was built from.
    pub commit: String,
    /// The image, `name:tag`.
    pub image: String,
    /// The registry's manifest digest (`sha256:...`); none when images stay in the engine.
    #[serde(default)]
    pub digest: Option<String>,
    /// The engine's id of the base image it was built on, to see the base change.
    #[serde(default)]
    pub base: Option<String>,
    /// The digests of its contents record and SBOM.
    #[serde(default)]
    pub contents_digest: Option<String>,
    #[serde(default)]
    pub sbom_digest: Option<String>,
    /// When its build started and ended (seconds since the epoch).
    pub started: i64,
    #[serde(default)]
    pub finished: Option<i64>,
    pub state: State,
    /// What the state is about: the build's or the smoke test's failure, a deprecation's reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// The smoke test's output (its end).
    #[serde(default)]
    pub smoke_output: Option<String>,
    /// The service's build id, whose log `/api/builds/<id>/events` replays.
    #[serde(default)]
    pub build_id: Option<String>,
    /// When retention deleted its image from the registry.
    #[serde(default)]
    pub deleted: Option<i64>,
    /// How its image came to be, as the build said (built, assembled on an environment, reused).
    #[serde(default)]
    pub built: Option<String>,
    /// The value its build resolved the repository's dependencies again with
    /// (`rebuild.lock_change` for environments that resolve in their steps); the entry's later
    /// builds keep it, so that they keep those packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
}

/// Where a version is in its life.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Its build is running (or was, when the service stopped).
    Building,
    /// The build failed, or stopped and was given up.
    Failed,
    /// Built, but its smoke test failed: never offered.
    Broken,
    /// Built and tested; waiting for an admin to promote it (manual promotion).
    Candidate,
    /// Offered.
    Promoted,
    /// Still offered, marked, with the reason users see.
    Deprecated,
    /// No longer offered; its image may be deleted by retention unless pinned.
    Retired,
}

impl State {
    /// Offered in the spawn form.
    pub fn offered(self) -> bool {
        matches!(self, State::Promoted | State::Deprecated)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Building => "building",
            State::Failed => "failed",
            State::Broken => "broken",
            State::Candidate => "candidate",
            State::Promoted => "promoted",
            State::Deprecated => "deprecated",
            State::Retired => "retired",
        }
    }
}

/// The image's tag for version `number` of `commit`.
pub fn tag(number: u32, commit: &str) -> String {
    let short: String = commit
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(12)
        .collect();
    format!("v{number}-{short}")
}

/// What a check found, before anything is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// What the entry's ref names now.
    pub commit: String,
    /// The engine's id of the base image now.
    pub base: Option<String>,
    /// Whether the registry still has the newest version's image at its digest (`None`: not
    /// asked, as for images kept in the engine).
    pub newest_in_registry: Option<bool>,
}

/// Whether a check builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Build { reason: String },
    Nothing { reason: String },
}

/// The freshness decision: a pure function of the entry's policy, its newest version that was
/// built (any but `building` and `failed`) and what the check observed.
pub fn decide(entry: &Entry, newest: Option<&Version>, observed: &Observed) -> Decision {
    let Some(newest) = newest else {
        return Decision::Build {
            reason: "the entry has no version yet".into(),
        };
    };
    let n = newest.number;
    if observed.newest_in_registry == Some(false) && newest.state != State::Broken {
        return Decision::Build {
            reason: format!(
                "the registry no longer has version {n}'s image {} at its digest",
                newest.image
            ),
        };
    }
    if newest.commit != observed.commit {
        if entry.rebuild.ref_change {
            return Decision::Build {
                reason: format!(
                    "{} moved from {} to {}",
                    entry.reference,
                    short(&newest.commit),
                    short(&observed.commit)
                ),
            };
        }
        return Decision::Nothing {
            reason: format!(
                "{} moved to {}, but the entry does not rebuild when its ref moves (rebuild.ref_change = false)",
                entry.reference,
                short(&observed.commit)
            ),
        };
    }
    if entry.rebuild.base_change
        && let (Some(was), Some(now)) = (&newest.base, &observed.base)
        && was != now
    {
        return Decision::Build {
            reason: format!(
                "the base image changed since version {n} ({} -> {})",
                short(was),
                short(now)
            ),
        };
    }
    Decision::Nothing {
        reason: match newest.state {
            State::Broken => format!(
                "nothing changed since version {n}, whose smoke test failed; fix the source or ask for a rebuild"
            ),
            _ => format!(
                "nothing changed since version {n} ({} at {})",
                newest.state.as_str(),
                short(&newest.commit)
            ),
        },
    }
}

fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        crate::load::parse(
            "name = \"C\"\n[[entry]]\nslug = \"py\"\nname = \"Py\"\nsource = \"gh:a/b\"\nref = \"main\"\n",
            "c",
        )
        .unwrap()
        .entries
        .remove(0)
    }

    fn version(commit: &str, base: &str, state: State) -> Version {
        Version {
            number: 4,
            commit: commit.into(),
            image: "r/c-py:v4-x".into(),
            digest: None,
            base: Some(base.into()),
            contents_digest: None,
            sbom_digest: None,
            started: 0,
            finished: Some(1),
            state,
            reason: None,
            smoke_output: None,
            build_id: None,
            deleted: None,
            built: None,
            refresh: None,
        }
    }

    fn observed(commit: &str, base: &str) -> Observed {
        Observed {
            commit: commit.into(),
            base: Some(base.into()),
            newest_in_registry: Some(true),
        }
    }

    #[test]
    fn the_first_check_builds_and_then_nothing_changed_builds_nothing() {
        let e = entry();
        assert!(matches!(
            decide(&e, None, &observed("aaa", "b1")),
            Decision::Build { .. }
        ));
        let v = version("aaa", "b1", State::Promoted);
        let Decision::Nothing { reason } = decide(&e, Some(&v), &observed("aaa", "b1")) else {
            panic!()
        };
        assert!(
            reason.contains("nothing changed since version 4"),
            "{reason}"
        );
    }

    #[test]
    fn a_moved_ref_or_a_new_base_builds_as_the_policy_says() {
        let mut e = entry();
        let v = version("aaa", "b1", State::Promoted);
        let Decision::Build { reason } = decide(&e, Some(&v), &observed("bbb", "b1")) else {
            panic!()
        };
        assert_eq!(reason, "main moved from aaa to bbb");
        assert!(matches!(
            decide(&e, Some(&v), &observed("aaa", "b2")),
            Decision::Build { .. }
        ));
        e.rebuild.ref_change = false;
        e.rebuild.base_change = false;
        assert!(matches!(
            decide(&e, Some(&v), &observed("bbb", "b2")),
            Decision::Nothing { .. }
        ));
    }

    #[test]
    fn an_image_gone_from_the_registry_is_built_again() {
        let v = version("aaa", "b1", State::Promoted);
        let mut gone = observed("aaa", "b1");
        gone.newest_in_registry = Some(false);
        let Decision::Build { reason } = decide(&entry(), Some(&v), &gone) else {
            panic!()
        };
        assert!(reason.contains("no longer has version 4"), "{reason}");
    }

    #[test]
    fn tags_are_unique_per_version() {
        assert_eq!(tag(3, "0123456789abcdef"), "v3-0123456789ab");
        assert_eq!(tag(1, "12345.v2"), "v1-12345.v2");
    }
}
