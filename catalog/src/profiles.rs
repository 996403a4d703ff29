//! What the hub's spawn form offers: KubeSpawner's `profile_list`, made from a community's
//! entries and their versions. Each entry with an offered version is a profile whose image is
//! named by digest; its versions (the newest `keep` promoted ones and every pinned one) are the
//! choices of its `image` option; deprecated versions are marked with their reason.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::community::Community;
use crate::entry::Entry;
use crate::version::{State, Version};

/// A version as offered.
#[derive(Clone, Debug, PartialEq)]
pub struct Offered<'a> {
    pub version: &'a Version,
    /// Its pin's label, when pinned.
    pub label: Option<String>,
    /// The image by digest (`name@sha256:...`), or by tag when images stay in the engine.
    pub image: String,
}

/// The image of a version by digest (`name@sha256:...`), else its tag.
pub fn image_reference(version: &Version) -> String {
    match &version.digest {
        Some(digest) => {
            let name = repository(&version.image);
            format!("{name}@{digest}")
        }
        None => version.image.clone(),
    }
}

/// `registry/path/name` of `registry/path/name:tag` (a registry's port is not a tag).
pub fn repository(image: &str) -> &str {
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// The versions of `entry` that are offered, newest first: the newest `keep` promoted or
/// deprecated ones, then every other pinned one that is not retired. `pins` are the pins kept in
/// the state (an admin's), beside those of the file.
pub fn offered<'a>(
    entry: &Entry,
    versions: &'a [Version],
    pins: &BTreeMap<u32, String>,
) -> Vec<Offered<'a>> {
    let label = |n: u32| {
        pins.get(&n)
            .cloned()
            .or_else(|| entry.pin_label(n).map(str::to_string))
    };
    let mut newest: Vec<&Version> = versions.iter().filter(|v| v.state.offered()).collect();
    newest.sort_by_key(|v| std::cmp::Reverse(v.number));
    newest.truncate(entry.keep.max(1));
    let mut chosen: Vec<&Version> = newest;
    for v in versions {
        let pinned = label(v.number).is_some();
        let usable = matches!(
            v.state,
            State::Promoted | State::Deprecated | State::Candidate
        );
        if pinned && usable && !chosen.iter().any(|c| c.number == v.number) {
            chosen.push(v);
        }
    }
    chosen.sort_by_key(|v| std::cmp::Reverse(v.number));
    chosen
        .into_iter()
        .map(|v| Offered {
            version: v,
            label: label(v.number),
            image: image_reference(v),
        })
        .collect()
}

/// The words a choice is shown with: `v3`, `Fall 2026 course (v2)`, `v1 (deprecated: ...)`.
pub fn choice_name(offered: &Offered<'_>) -> String {
    let v = offered.version;
    let mut name = match &offered.label {
        Some(label) => format!("{label} (v{})", v.number),
        None => format!("v{}", v.number),
    };
    if v.state == State::Deprecated {
        name.push_str(&format!(
            " (deprecated: {})",
            v.reason.as_deref().unwrap_or("no reason given")
        ));
    }
    name
}

/// KubeSpawner's `profile_list` for a community: `versions` by entry slug. Entries without an
/// offered version are left out; the first profile is the default.
pub fn profile_list(
    community: &Community,
    versions: &BTreeMap<String, Vec<Version>>,
    pins: &BTreeMap<String, BTreeMap<u32, String>>,
) -> Value {
    let empty_versions = Vec::new();
    let empty_pins = BTreeMap::new();
    let mut profiles = Vec::new();
    for entry in &community.entries {
        let offered = offered(
            entry,
            versions.get(&entry.slug).unwrap_or(&empty_versions),
            pins.get(&entry.slug).unwrap_or(&empty_pins),
        );
        let Some(first) = offered.first() else {
            continue;
        };
        let mut overrides = serde_json::Map::new();
        for (k, v) in &entry.resources {
            overrides.insert(k.clone(), v.clone());
        }
        overrides.insert("image".into(), json!(first.image));
        let mut choices = serde_json::Map::new();
        for (i, o) in offered.iter().enumerate() {
            choices.insert(
                format!("v{}", o.version.number),
                json!({
                    "display_name": choice_name(o),
                    "default": i == 0,
                    "kubespawner_override": {"image": o.image},
                }),
            );
        }
        let mut profile = json!({
            "display_name": entry.name,
            "slug": entry.slug,
            "description": entry.description,
            "kubespawner_override": Value::Object(overrides),
            "profile_options": {
                "image": {"display_name": "Version", "choices": Value::Object(choices)},
            },
        });
        if profiles.is_empty() {
            profile["default"] = json!(true);
        }
        profiles.push(profile);
    }
    Value::Array(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(number: u32, state: State) -> Version {
        Version {
            number,
            commit: format!("c{number}"),
            image: format!("127.0.0.1:5000/lab-py:v{number}-c{number}"),
            digest: Some(format!("sha256:{number:064}")),
            base: None,
            contents_digest: None,
            sbom_digest: None,
            started: 0,
            finished: None,
            state,
            reason: (state == State::Deprecated).then(|| "numpy 2 breaks week 3".into()),
            smoke_output: None,
            build_id: None,
            deleted: None,
            built: None,
            refresh: None,
        }
    }

    #[test]
    fn the_profile_list_offers_promoted_and_pinned_versions_by_digest() {
        let community = crate::load::parse(
            "name = \"Lab\"\n[[entry]]\nslug = \"py\"\nname = \"Python\"\nsource = \"gh:a/b\"\nkeep = 2\nresources = { cpu_limit = 2 }\n[[entry.pin]]\nversion = 1\nlabel = \"Fall 2026 course\"\n[[entry]]\nslug = \"r\"\nname = \"R\"\nsource = \"gh:a/r\"\n",
            "lab",
        )
        .unwrap();
        let versions = BTreeMap::from([(
            "py".to_string(),
            vec![
                version(1, State::Retired),
                version(2, State::Promoted),
                version(3, State::Deprecated),
                version(4, State::Promoted),
                version(5, State::Candidate),
                version(6, State::Broken),
            ],
        )]);
        let list = profile_list(&community, &versions, &BTreeMap::new());
        let list = list.as_array().unwrap();
        // R has no version: not offered.
        assert_eq!(list.len(), 1);
        let py = &list[0];
        assert_eq!(py["default"], true);
        assert_eq!(py["kubespawner_override"]["cpu_limit"], 2);
        assert_eq!(
            py["kubespawner_override"]["image"],
            format!("127.0.0.1:5000/lab-py@sha256:{:064}", 4)
        );
        let choices = py["profile_options"]["image"]["choices"]
            .as_object()
            .unwrap();
        // keep = 2: v4 and v3; v1 is pinned but retired; v5 is not promoted; v6 is broken.
        let mut keys: Vec<&String> = choices.keys().collect();
        keys.sort();
        assert_eq!(keys, ["v3", "v4"]);
        assert_eq!(
            choices["v3"]["display_name"],
            "v3 (deprecated: numpy 2 breaks week 3)"
        );
        assert_eq!(choices["v4"]["default"], true);
        // An admin's pin brings back v2 under its label.
        let pins = BTreeMap::from([(
            "py".to_string(),
            BTreeMap::from([(2, "Spring".to_string())]),
        )]);
        let list = profile_list(&community, &versions, &pins);
        let choices = list[0]["profile_options"]["image"]["choices"]
            .as_object()
            .unwrap();
        assert_eq!(choices["v2"]["display_name"], "Spring (v2)");
    }

    #[test]
    fn an_image_with_a_port_in_its_registry_is_named_by_digest() {
        let v = version(7, State::Promoted);
        assert_eq!(
            image_reference(&v),
            format!("127.0.0.1:5000/lab-py@sha256:{:064}", 7)
        );
    }
}
