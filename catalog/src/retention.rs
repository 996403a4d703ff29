//! Retention: which images of a community's catalogue may be deleted from the registry. Only
//! versions that are no longer offered (retired, broken, failed), are not pinned (in the file or
//! by an admin) and whose digest no kept version shares; nothing offered, waiting for promotion
//! or still building is ever chosen.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::community::Community;
use crate::profiles::repository;
use crate::version::{State, Version};

/// An image retention would delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Doomed {
    pub entry: String,
    pub version: u32,
    /// `name:tag`.
    pub image: String,
    pub digest: String,
}

/// The images of `community` to delete, given each entry's versions and admins' pins.
pub fn plan(
    community: &Community,
    versions: &BTreeMap<String, Vec<Version>>,
    pins: &BTreeMap<String, BTreeMap<u32, String>>,
) -> Vec<Doomed> {
    let pinned = |slug: &str, n: u32| {
        pins.get(slug).is_some_and(|p| p.contains_key(&n))
            || community
                .entry(slug)
                .is_some_and(|e| e.pin_label(n).is_some())
    };
    let deletable = |slug: &str, v: &Version| {
        matches!(v.state, State::Retired | State::Broken | State::Failed)
            && v.deleted.is_none()
            && v.digest.is_some()
            && !pinned(slug, v.number)
    };
    // A deletion removes a digest from one repository: the (repository, digest) pairs that a kept
    // version names stay (two versions of an entry may have one digest).
    let key = |v: &Version, digest: &str| (repository(&v.image).to_string(), digest.to_string());
    let mut kept = BTreeSet::new();
    for (slug, list) in versions {
        for v in list {
            if !deletable(slug, v)
                && let Some(d) = &v.digest
            {
                kept.insert(key(v, d));
            }
        }
    }
    let mut doomed = Vec::new();
    let mut chosen = BTreeSet::new();
    for (slug, list) in versions {
        for v in list {
            let Some(digest) = &v.digest else { continue };
            if deletable(slug, v)
                && !kept.contains(&key(v, digest))
                && chosen.insert(key(v, digest))
            {
                doomed.push(Doomed {
                    entry: slug.clone(),
                    version: v.number,
                    image: v.image.clone(),
                    digest: digest.clone(),
                });
            }
        }
    }
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(number: u32, state: State, digest: &str) -> Version {
        Version {
            number,
            commit: "c".into(),
            image: format!("r/lab-py:v{number}-c"),
            digest: Some(digest.into()),
            base: None,
            contents_digest: None,
            sbom_digest: None,
            started: 0,
            finished: None,
            state,
            reason: None,
            smoke_output: None,
            build_id: None,
            deleted: None,
            built: None,
            refresh: None,
        }
    }

    #[test]
    fn only_versions_nobody_keeps_are_deleted() {
        let community = crate::load::parse(
            "name = \"Lab\"\n[[entry]]\nslug = \"py\"\nname = \"Py\"\nsource = \"gh:a/b\"\n[[entry.pin]]\nversion = 2\nlabel = \"Fall\"\n",
            "lab",
        )
        .unwrap();
        let mut deleted = v(7, State::Retired, "sha256:g");
        deleted.deleted = Some(1);
        // Another entry's image with the digest of py's offered version: another repository.
        let mut other = v(1, State::Retired, "sha256:e");
        other.image = "r/lab-r:v1-c".into();
        let versions = BTreeMap::from([
            ("r".to_string(), vec![other]),
            (
                "py".to_string(),
                vec![
                    v(1, State::Retired, "sha256:a"),
                    // Pinned in the file.
                    v(2, State::Retired, "sha256:b"),
                    // Pinned by an admin.
                    v(3, State::Retired, "sha256:c"),
                    // Shares its digest with the offered version 5.
                    v(4, State::Retired, "sha256:e"),
                    v(5, State::Promoted, "sha256:e"),
                    v(6, State::Broken, "sha256:f"),
                    deleted,
                    v(8, State::Candidate, "sha256:h"),
                ],
            ),
        ]);
        let pins = BTreeMap::from([("py".to_string(), BTreeMap::from([(3, "x".to_string())]))]);
        let doomed: Vec<(&str, u32)> = plan(&community, &versions, &pins)
            .iter()
            .map(|d| (if d.entry == "py" { "py" } else { "r" }, d.version))
            .collect();
        assert_eq!(doomed, [("py", 1), ("py", 6), ("r", 1)]);
    }
}
