//! The communities folder: one `<id>.toml` per community. A file that does not parse or says
//! something impossible is reported with its file, line and column, and left out; the other
//! communities load and keep serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::community::{Community, valid_id};

/// The largest community file read (a catalogue of a few hundred entries is far smaller).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Communities, by id, and the files that were left out.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub communities: BTreeMap<String, Community>,
    pub errors: Vec<FileError>,
}

impl Loaded {
    /// The community a request's `Host` names: one of its `hosts`, compared without case and
    /// with or without the port.
    pub fn by_host(&self, host: &str) -> Option<&Community> {
        let host = host.to_ascii_lowercase();
        let bare = host
            .rsplit_once(':')
            .map_or(host.as_str(), |(name, _)| name);
        self.communities
            .values()
            .find(|c| c.hosts.iter().any(|h| *h == host || *h == bare))
    }
}

/// A community file left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no place in the file (it could not be read).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

/// Load every `*.toml` of `dir` (not its subfolders), in name order. A missing folder is an
/// error of its own (the service was told to serve communities from it).
pub fn load_dir(dir: &Path) -> Result<Loaded, std::io::Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    let mut loaded = Loaded::default();
    for file in files {
        match load_file(&file) {
            Ok(community) => {
                if let Some(first) = loaded.communities.get(&community.id) {
                    loaded.errors.push(FileError {
                        file: file.clone(),
                        line: 0,
                        column: 0,
                        message: format!(
                            "community id {:?} is taken by the community {:?} in another file",
                            community.id, first.name
                        ),
                    });
                    continue;
                }
                if let Some((host, first)) = community.hosts.iter().find_map(|h| {
                    loaded
                        .communities
                        .values()
                        .find(|c| c.hosts.contains(h))
                        .map(|c| (h, c))
                }) {
                    loaded.errors.push(FileError {
                        file: file.clone(),
                        line: 0,
                        column: 0,
                        message: format!(
                            "host {host:?} is taken by the community {:?} in another file",
                            first.id
                        ),
                    });
                    continue;
                }
                loaded.communities.insert(community.id.clone(), community);
            }
            Err(e) => loaded.errors.push(e),
        }
    }
    Ok(loaded)
}

/// Read and check one community file.
pub fn load_file(file: &Path) -> Result<Community, FileError> {
    let fail = |line, column, message: String| FileError {
        file: file.to_path_buf(),
        line,
        column,
        message,
    };
    let size = std::fs::metadata(file)
        .map_err(|e| fail(0, 0, format!("cannot read it: {e}")))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(fail(
            0,
            0,
            format!("it is {size} bytes; community files are limited to {MAX_FILE_BYTES}"),
        ));
    }
    let text =
        std::fs::read_to_string(file).map_err(|e| fail(0, 0, format!("cannot read it: {e}")))?;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse(&text, &stem).map_err(|(offset, message)| {
        let (line, column) = offset.map_or((0, 0), |o| line_column(&text, o));
        fail(line, column, message)
    })
}

/// Parse a community file's text; `default_id` is the file's name. Errors carry the byte offset
/// they point at, when they have one.
pub fn parse(text: &str, default_id: &str) -> Result<Community, (Option<usize>, String)> {
    let mut community: Community = toml::from_str(text).map_err(|e: toml::de::Error| {
        (
            e.span().map(|s| s.start),
            e.message().trim_end().to_string(),
        )
    })?;
    if community.id.is_empty() {
        community.id = default_id.to_string();
    }
    let at = |needle: &str| text.find(needle);
    if !valid_id(&community.id) {
        return Err((
            at("id").filter(|_| text.contains("id =")),
            format!(
                "community id {:?} must be 1 to 40 of a-z, 0-9 and '-' (name the file <id>.toml or set id = \"...\")",
                community.id
            ),
        ));
    }
    if community.name.trim().is_empty() {
        return Err((at("name"), "name is empty".into()));
    }
    if let Some(prefix) = &community.registry_prefix
        && (prefix.contains(char::is_whitespace) || !prefix.contains('/'))
    {
        return Err((
            at("registry_prefix"),
            format!(
                "registry_prefix {prefix:?} must be a registry and a path, such as \"registry.example/physics-\""
            ),
        ));
    }
    if let Some(host) = community
        .hosts
        .iter()
        .find(|h| !crate::community::valid_host(h))
    {
        return Err((
            text.find(host.as_str()),
            format!(
                "host {host:?} must be a lower-case host name with an optional port, such as \"physics.kiln.example\""
            ),
        ));
    }
    if let Some(schedule) = &community.retention.schedule
        && let Err(e) = crate::schedule::Schedule::parse(schedule)
    {
        return Err((text.find(schedule.as_str()), format!("[retention] {e}")));
    }
    if let Some(hub) = &community.hub {
        for (field, address) in [("url", Some(&hub.url)), ("api_url", hub.api_url.as_ref())] {
            let Some(address) = address else { continue };
            let scheme = address.starts_with("http://") || address.starts_with("https://");
            // No user or password in it: the address is shown and recorded.
            let authority = address
                .split_once("://")
                .map_or("", |(_, rest)| rest.split('/').next().unwrap_or_default());
            if !scheme
                || !address.ends_with('/')
                || address.contains(char::is_whitespace)
                || authority.contains('@')
            {
                // A user or password is not repeated in the message (it reaches the log).
                let shown = match authority.rsplit_once('@') {
                    Some((_, host)) => format!("(a user or password)@{host}"),
                    None => format!("{address:?}"),
                };
                return Err((
                    text.find(address.as_str()),
                    format!(
                        "[hub] {field} {shown} must be an http(s) address ending in '/', without a user or password, such as \"https://hub.example.org/\""
                    ),
                ));
            }
        }
    }
    let mut slugs = std::collections::BTreeSet::new();
    for entry in &community.entries {
        // The entry's own line: where its slug is written.
        let place = text
            .find(&format!("\"{}\"", entry.slug))
            .or_else(|| at("[[entry]]"));
        if !slugs.insert(entry.slug.clone()) {
            return Err((
                place,
                format!("entry {:?} appears twice; slugs must differ", entry.slug),
            ));
        }
        if let Some(problem) = entry.problems().into_iter().next() {
            return Err((place, format!("entry {:?}: {problem}", entry.slug)));
        }
    }
    Ok(community)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A fingerprint of the folder's community files (names, sizes, modification times), so that a
/// watcher reloads only when a file changed.
pub fn fingerprint(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut rows: Vec<(PathBuf, u64, Option<std::time::SystemTime>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.len(), m.modified().ok()))
        })
        .collect();
    rows.sort();
    rows.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "Physics 101"
registry_prefix = "registry.example/physics-"

[admins]
users = ["alice"]

[[entry]]
slug = "python"
name = "Python for physics"
source = "https://git.example/physics/python-env.git"
ref = "main"
promotion = "manual"

[entry.rebuild]
schedule = "0 3 * * 1"

[[entry.pin]]
version = 2
label = "Fall 2026 course"
"#;

    #[test]
    fn a_community_file_loads_with_its_defaults() {
        let c = parse(GOOD, "physics-101").unwrap();
        assert_eq!(c.id, "physics-101");
        assert_eq!(c.entries.len(), 1);
        let e = &c.entries[0];
        assert_eq!(e.reference, "main");
        assert_eq!(e.keep, 3);
        assert_eq!(e.smoke, crate::entry::default_smoke());
        assert!(e.rebuild.ref_change && e.rebuild.base_change);
        assert_eq!(e.pin_label(2), Some("Fall 2026 course"));
        assert!(c.build_your_own.enabled);
    }

    #[test]
    fn a_malformed_file_names_its_line_and_column_and_the_others_still_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("physics-101.toml"), GOOD).unwrap();
        // Line 3, column 12: a string where a table was expected.
        std::fs::write(
            dir.path().join("broken.toml"),
            "name = \"Broken\"\n\nadmins = \"alice\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("typo.toml"),
            "name = \"Typo\"\n[[entry]]\nslug = \"x\"\nname = \"X\"\nsource = \"gh:a/b\"\nreff = \"main\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("cron.toml"),
            "name = \"Cron\"\n[[entry]]\nslug = \"nightly\"\nname = \"N\"\nsource = \"gh:a/b\"\nrebuild = { schedule = \"every night\" }\n",
        )
        .unwrap();
        let loaded = load_dir(dir.path()).unwrap();
        assert_eq!(
            loaded.communities.keys().collect::<Vec<_>>(),
            ["physics-101"]
        );
        let errors: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].contains("broken.toml:3:10:"), "{}", errors[0]);
        assert!(errors[1].contains("cron.toml:3:8:"), "{}", errors[1]);
        assert!(errors[1].contains("\"every night\" is not a cron expression"));
        assert!(errors[2].contains("typo.toml:6:1:"), "{}", errors[2]);
        assert!(errors[2].contains("reff"), "{}", errors[2]);
    }

    #[test]
    fn two_files_cannot_claim_one_id() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "id = \"lab\"\nname = \"A\"\n").unwrap();
        std::fs::write(dir.path().join("lab.toml"), "name = \"B\"\n").unwrap();
        let loaded = load_dir(dir.path()).unwrap();
        assert_eq!(loaded.communities["lab"].name, "A");
        assert!(loaded.errors[0].message.contains("taken"));
    }

    #[test]
    fn a_hub_address_must_be_http_and_its_token_is_named_after_the_community() {
        let c = parse(
            "name = \"Lab\"\n[hub]\nurl = \"https://hub.example.org/\"\n",
            "physics-101",
        )
        .unwrap();
        assert_eq!(
            c.hub_token_variable(),
            "KILN_COMMUNITY_PHYSICS_101_HUB_TOKEN"
        );
        let (_, message) =
            parse("name = \"Lab\"\n[hub]\nurl = \"hub.example.org\"\n", "lab").unwrap_err();
        assert!(message.contains("must be an http(s) address"), "{message}");
        // The token is never in the file, and a file cannot name another variable for it.
        let (_, message) = parse(
            "name = \"Lab\"\n[hub]\nurl = \"https://h/\"\ntoken_env = \"KILN_BUILD_TOKEN\"\n",
            "lab",
        )
        .unwrap_err();
        assert!(message.contains("token_env"), "{message}");
    }

    #[test]
    fn a_host_names_one_community_and_two_files_cannot_claim_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, hosts: &str| {
            std::fs::write(
                dir.path().join(name),
                format!("name = \"N\"\nhosts = [{hosts}]\n"),
            )
            .unwrap()
        };
        file("a.toml", "\"physics.kiln.example\", \"127.0.0.1:9100\"");
        file("b.toml", "\"physics.kiln.example\"");
        file("c.toml", "\"Physics Example\"");
        let loaded = load_dir(dir.path()).unwrap();
        assert_eq!(loaded.communities.keys().collect::<Vec<_>>(), ["a"]);
        assert!(
            loaded.errors[0]
                .message
                .contains("host \"physics.kiln.example\" is taken")
        );
        assert!(loaded.errors[1].message.contains("lower-case host name"));
        for host in [
            "physics.kiln.example",
            "PHYSICS.kiln.example:443",
            "127.0.0.1:9100",
        ] {
            assert_eq!(
                loaded.by_host(host).map(|c| c.id.as_str()),
                Some("a"),
                "{host}"
            );
        }
        assert!(loaded.by_host("127.0.0.1:9101").is_none());
        assert!(loaded.by_host("kiln.example").is_none());
    }

    #[test]
    fn a_retention_schedule_must_be_cron() {
        let c = parse("name = \"L\"\n[retention]\nschedule = \"0 4 * * 0\"\n", "l").unwrap();
        assert_eq!(c.retention.schedule.as_deref(), Some("0 4 * * 0"));
        let (offset, message) =
            parse("name = \"L\"\n[retention]\nschedule = \"weekly\"\n", "l").unwrap_err();
        assert!(message.starts_with("[retention]"), "{message}");
        assert!(offset.is_some());
    }
}
