//! A catalogue entry: one environment a community offers, built from a source and ref, rebuilt
//! by its policy, promoted after its smoke test (or by an admin), with versions kept and pinned.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One `[[entry]]` of a community file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// `[a-z0-9-]`: names the entry in URLs and its images.
    pub slug: String,
    /// What the spawn form shows.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Any source `kiln build` takes: a git URL, `gh:org/repo`, a DOI, `zenodo:...`.
    pub source: String,
    /// A branch, a tag or a commit; `HEAD` (the default branch) when absent.
    #[serde(default = "head", rename = "ref")]
    pub reference: String,
    /// Run in each new version's image before it may be promoted; it must exit 0.
    #[serde(default = "default_smoke")]
    pub smoke: Vec<String>,
    #[serde(default)]
    pub promotion: Promotion,
    /// Promoted versions kept offered (the newest first); older ones are retired unless pinned.
    #[serde(default = "default_keep")]
    pub keep: usize,
    #[serde(default)]
    pub rebuild: Rebuild,
    /// Passed to the spawner as the profile's overrides (`kubespawner_override`), such as
    /// `cpu_limit = 2` or `mem_limit = "4G"`.
    #[serde(default)]
    pub resources: BTreeMap<String, serde_json::Value>,
    /// Versions offered beside the newest, each with its label, `[[entry.pin]]`.
    #[serde(default)]
    pub pin: Vec<Pin>,
}

/// When a new version becomes the one offered.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Promotion {
    /// As soon as its smoke test passes.
    #[default]
    Auto,
    /// When an admin promotes it.
    Manual,
}

/// What makes a check build a new version.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rebuild {
    /// When the service checks the entry on its own (five-field cron, UTC), besides checks an
    /// admin asks for. None: only when asked.
    #[serde(default)]
    pub schedule: Option<String>,
    /// The ref now names another commit (or the record another version).
    #[serde(default = "yes")]
    pub ref_change: bool,
    /// The base image is not the one the last version was built on.
    #[serde(default = "yes")]
    pub base_change: bool,
    /// Re-solving the environment's unpinned dependencies gives other packages than the newest
    /// version holds: a conda environment is solved again (no build); requirements that the
    /// build's steps resolve (pip, R, Julia) are built again with a new refresh and compared. Each
    /// check then does that work, so it is off unless asked for.
    #[serde(default)]
    pub lock_change: bool,
}

impl Default for Rebuild {
    fn default() -> Self {
        Rebuild {
            schedule: None,
            ref_change: true,
            base_change: true,
            lock_change: false,
        }
    }
}

/// A version offered under its own label ("Fall 2026 course").
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub version: u32,
    pub label: String,
}

fn head() -> String {
    "HEAD".into()
}

fn yes() -> bool {
    true
}

fn default_keep() -> usize {
    3
}

/// Every kiln image serves JupyterLab, so by default a version must at least start it.
pub fn default_smoke() -> Vec<String> {
    vec!["jupyter".into(), "lab".into(), "--version".into()]
}

impl Entry {
    /// What is wrong with the entry beyond its types, in words; empty when nothing is.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !crate::community::valid_id(&self.slug) {
            problems.push(format!(
                "slug {:?} must be 1 to 40 of a-z, 0-9 and '-', not starting or ending with '-'",
                self.slug
            ));
        }
        if self.name.trim().is_empty() {
            problems.push("name is empty".into());
        }
        if self.source.trim().is_empty() {
            problems.push("source is empty".into());
        }
        if self.smoke.is_empty() {
            problems.push("smoke is empty: give the command that shows a version works".into());
        }
        if self.keep == 0 {
            problems.push("keep must be at least 1".into());
        }
        if let Some(schedule) = &self.rebuild.schedule
            && let Err(e) = crate::schedule::Schedule::parse(schedule)
        {
            problems.push(e.to_string());
        }
        let mut seen = std::collections::BTreeSet::new();
        for pin in &self.pin {
            if !seen.insert(pin.version) {
                problems.push(format!("version {} is pinned twice", pin.version));
            }
            if pin.label.trim().is_empty() {
                problems.push(format!("the pin of version {} has no label", pin.version));
            }
        }
        problems
    }

    /// The label a version is pinned under.
    pub fn pin_label(&self, version: u32) -> Option<&str> {
        self.pin
            .iter()
            .find(|p| p.version == version)
            .map(|p| p.label.as_str())
    }
}
