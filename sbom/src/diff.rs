//! What changed between two images: packages added, removed and changed per manager and
//! environment, the base image, the runtimes (OS, Python, R, Julia, the CRAN snapshot), and the
//! image sizes when the caller knows them. [`ContentsDiff`] serialises as JSON (serde);
//! [`ContentsDiff::table`] is the human form.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::record::{BaseImage, Contents, Manager};
use crate::table;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentsDiff {
    /// The digests of the two records.
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<BaseImageChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<SizeChange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtimes: Vec<ValueChange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<ManagerDiff>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseImageChange {
    pub old: Option<BaseImage>,
    pub new: Option<BaseImage>,
}

/// Image sizes in bytes (as the caller measures them: compressed layers, or the engine's size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeChange {
    pub old: u64,
    pub new: u64,
}

/// A changed fact: `what` is `os`, `architecture`, `python /srv/venv`, `r`, `r snapshot`,
/// `julia /path/Manifest.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueChange {
    pub what: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// The changes of one manager's environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerDiff {
    pub manager: Manager,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<Package>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<Package>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<VersionChange>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionChange {
    pub name: String,
    pub old: String,
    pub new: String,
}

type Environments = BTreeMap<(Manager, Option<String>), BTreeMap<String, String>>;

fn environments(record: &Contents) -> Environments {
    let mut out: Environments = BTreeMap::new();
    for e in record.entries() {
        out.entry((e.manager, e.environment))
            .or_default()
            .insert(e.name, e.version);
    }
    out
}

fn runtimes(record: &Contents) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(os) = &record.os {
        let version = os.version_id.as_deref().unwrap_or_default();
        out.insert(
            "os".to_string(),
            format!("{} {version}", os.id).trim().to_string(),
        );
    }
    if let Some(arch) = &record.architecture {
        out.insert("architecture".to_string(), arch.clone());
    }
    for env in &record.python {
        if let Some(v) = &env.python_version {
            out.insert(format!("python {}", env.prefix), v.clone());
        }
    }
    if let Some(r) = &record.r {
        out.insert("r".to_string(), r.version.clone());
        if let Some(d) = &r.snapshot_date {
            out.insert("r snapshot".to_string(), d.clone());
        }
    }
    for env in &record.julia {
        if let Some(v) = &env.julia_version {
            out.insert(format!("julia {}", env.manifest), v.clone());
        }
    }
    out
}

/// What changed from `a` to `b`.
pub fn diff(a: &Contents, b: &Contents) -> ContentsDiff {
    let mut out = ContentsDiff {
        from: a.digest(),
        to: b.digest(),
        ..Default::default()
    };
    if a.base_image != b.base_image {
        out.base_image = Some(BaseImageChange {
            old: a.base_image.clone(),
            new: b.base_image.clone(),
        });
    }
    let (ra, rb) = (runtimes(a), runtimes(b));
    for what in ra.keys().chain(rb.keys()).collect::<BTreeSet<_>>() {
        let (old, new) = (ra.get(what), rb.get(what));
        if old != new {
            out.runtimes.push(ValueChange {
                what: what.clone(),
                old: old.cloned(),
                new: new.cloned(),
            });
        }
    }
    let (ea, eb) = (environments(a), environments(b));
    let empty = BTreeMap::new();
    for key in ea.keys().chain(eb.keys()).collect::<BTreeSet<_>>() {
        let (old, new) = (ea.get(key).unwrap_or(&empty), eb.get(key).unwrap_or(&empty));
        let mut d = ManagerDiff {
            manager: key.0,
            environment: key.1.clone(),
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
        };
        for (name, version) in old {
            match new.get(name) {
                None => d.removed.push(Package {
                    name: name.clone(),
                    version: version.clone(),
                }),
                Some(v) if v != version => d.changed.push(VersionChange {
                    name: name.clone(),
                    old: version.clone(),
                    new: v.clone(),
                }),
                Some(_) => {}
            }
        }
        for (name, version) in new {
            if !old.contains_key(name) {
                d.added.push(Package {
                    name: name.clone(),
                    version: version.clone(),
                });
            }
        }
        if !(d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty()) {
            out.packages.push(d);
        }
    }
    out
}

impl ContentsDiff {
    /// With the two images' sizes in bytes.
    pub fn with_sizes(mut self, old: u64, new: u64) -> ContentsDiff {
        self.size = Some(SizeChange { old, new });
        self
    }

    /// Whether the two records hold the same (sizes aside).
    pub fn is_empty(&self) -> bool {
        self.base_image.is_none() && self.runtimes.is_empty() && self.packages.is_empty()
    }

    /// The human form: the base image, size and runtime changes, then one row per package change
    /// (grouped by manager and environment, by name within them), columns aligned.
    pub fn table(&self) -> String {
        let mut facts: Vec<[String; 3]> = Vec::new();
        if let Some(change) = &self.base_image {
            let show = |b: &Option<BaseImage>| match b {
                Some(b) => match &b.digest {
                    Some(d) => format!("{}@{d}", b.name),
                    None => b.name.clone(),
                },
                None => "-".to_string(),
            };
            facts.push(["base image".into(), show(&change.old), show(&change.new)]);
        }
        if let Some(size) = &self.size {
            let delta = size.new as i128 - size.old as i128;
            let sign = if delta < 0 { "-" } else { "+" };
            facts.push([
                "size".into(),
                table::bytes(size.old),
                format!(
                    "{} ({sign}{})",
                    table::bytes(size.new),
                    table::bytes(delta.unsigned_abs() as u64)
                ),
            ]);
        }
        for r in &self.runtimes {
            let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            facts.push([r.what.clone(), or_dash(&r.old), or_dash(&r.new)]);
        }
        let mut rows: Vec<[String; 6]> = Vec::new();
        for d in &self.packages {
            let env = d.environment.clone().unwrap_or_default();
            let mut group: Vec<[String; 6]> = Vec::new();
            for p in &d.removed {
                group.push(row(d.manager, &env, &p.name, "removed", &p.version, "-"));
            }
            for p in &d.added {
                group.push(row(d.manager, &env, &p.name, "added", "-", &p.version));
            }
            for c in &d.changed {
                group.push(row(d.manager, &env, &c.name, "changed", &c.old, &c.new));
            }
            group.sort_by(|a, b| a[2].cmp(&b[2]));
            rows.extend(group);
        }
        if facts.is_empty() && rows.is_empty() {
            return "no differences\n".to_string();
        }
        let mut out = String::new();
        if !facts.is_empty() {
            out.push_str(&table::render(&["WHAT", "OLD", "NEW"], facts));
        }
        if !rows.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&table::render(
                &["MANAGER", "ENVIRONMENT", "PACKAGE", "CHANGE", "OLD", "NEW"],
                rows,
            ));
        }
        out
    }
}

fn row(m: Manager, env: &str, name: &str, change: &str, old: &str, new: &str) -> [String; 6] {
    [
        m.to_string(),
        env.to_string(),
        name.to_string(),
        change.to_string(),
        old.to_string(),
        new.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{PythonEnvironment, PythonPackage};

    fn record(numpy: &str) -> Contents {
        Contents {
            schema: crate::SCHEMA.into(),
            python: vec![PythonEnvironment {
                prefix: "/srv/venv".into(),
                python_version: Some("3.12.7".into()),
                packages: vec![
                    PythonPackage {
                        name: "numpy".into(),
                        version: numpy.into(),
                        ..Default::default()
                    },
                    PythonPackage {
                        name: "six".into(),
                        version: "1.16.0".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_same_record_has_no_differences() {
        let d = diff(&record("1.26.4"), &record("1.26.4"));
        assert!(d.is_empty());
        assert_eq!(d.table(), "no differences\n");
    }

    #[test]
    fn sizes_show_with_their_delta() {
        let d = diff(&record("1"), &record("1")).with_sizes(1_073_741_824, 1_178_599_424);
        let t = d.table();
        assert!(t.contains("size  1.0 GiB  1.1 GiB (+100.0 MiB)"), "{t}");
    }
}
