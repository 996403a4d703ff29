//! The catalogue's state, in SQLite beside the service's own: each entry's versions, its last
//! check, the pins admins add, and the lease that lets only one replica check an entry at a time.
//!
//! Several processes (replicas, `kiln catalog` beside `kiln serve`) may open one file: every
//! change is one transaction, and a lease is taken in an immediate transaction, so two of them
//! never both hold it. Calls block; async callers run them in `spawn_blocking`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::version::{State, Version};

#[derive(Debug, thiserror::Error)]
#[error("catalogue state {path}: {message}")]
pub struct StoreError {
    pub path: String,
    pub message: String,
}

/// The catalogue state.
pub struct CatalogStore {
    conn: Mutex<Connection>,
    path: String,
    /// Bumped by every write through this connection (SQLite's `data_version` counts the others').
    writes: std::sync::atomic::AtomicU64,
}

/// An entry's last check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// When (seconds since the epoch).
    pub checked: i64,
    /// What it concluded ("nothing changed since version 3", "built version 4").
    pub result: String,
    /// Why it could not conclude (the source is gone), shown with the entry.
    pub error: Option<String>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS versions (
    community TEXT NOT NULL, entry TEXT NOT NULL, number INTEGER NOT NULL,
    state TEXT NOT NULL, started INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (community, entry, number));
CREATE TABLE IF NOT EXISTS checks (
    community TEXT NOT NULL, entry TEXT NOT NULL, checked INTEGER NOT NULL,
    result TEXT NOT NULL, error TEXT, PRIMARY KEY (community, entry));
CREATE TABLE IF NOT EXISTS pins (
    community TEXT NOT NULL, entry TEXT NOT NULL, number INTEGER NOT NULL, label TEXT NOT NULL,
    PRIMARY KEY (community, entry, number));
CREATE TABLE IF NOT EXISTS leases (
    community TEXT NOT NULL, entry TEXT NOT NULL, holder TEXT NOT NULL, until INTEGER NOT NULL,
    PRIMARY KEY (community, entry));
";

impl CatalogStore {
    pub fn open(path: &Path) -> Result<CatalogStore, StoreError> {
        let fail = |e: rusqlite::Error| StoreError {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StoreError {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        }
        let conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        // With WAL, NORMAL cannot corrupt the file; a power cut may lose the last commits.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        Ok(CatalogStore {
            conn: Mutex::new(conn),
            path: path.display().to_string(),
            writes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut conn).map_err(|e| self.error(e))
    }

    /// [`CatalogStore::with`] for a change: the generation moves on.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let result = self.with(f);
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        result
    }

    /// A value that changes whenever the state may have changed, by this process or another:
    /// answers made from the state can be kept until it moves.
    pub fn generation(&self) -> Result<(u64, i64), StoreError> {
        let theirs = self.with(|c| c.query_row("PRAGMA data_version", [], |r| r.get(0)))?;
        Ok((
            self.writes.load(std::sync::atomic::Ordering::SeqCst),
            theirs,
        ))
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// An entry's versions, oldest first.
    pub fn versions(&self, community: &str, entry: &str) -> Result<Vec<Version>, StoreError> {
        let rows: Vec<String> = self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT record FROM versions WHERE community = ?1 AND entry = ?2 ORDER BY number",
            )?;
            let rows = stmt.query_map(params![community, entry], |r| r.get(0))?;
            rows.collect()
        })?;
        rows.iter()
            .map(|r| serde_json::from_str(r).map_err(|e| self.error(e)))
            .collect()
    }

    /// Every entry's versions (oldest first) and pins in a community: two queries, for the
    /// profile list and the catalogue, however many entries there are.
    #[allow(clippy::type_complexity)]
    pub fn community(
        &self,
        community: &str,
    ) -> Result<
        (
            BTreeMap<String, Vec<Version>>,
            BTreeMap<String, BTreeMap<u32, String>>,
        ),
        StoreError,
    > {
        let (records, pin_rows): (Vec<(String, String)>, Vec<(String, u32, String)>) =
            self.with(|c| {
                let mut stmt = c.prepare_cached(
                    "SELECT entry, record FROM versions WHERE community = ?1 ORDER BY entry, number",
                )?;
                let records = stmt
                    .query_map(params![community], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut stmt = c.prepare_cached(
                    "SELECT entry, number, label FROM pins WHERE community = ?1 ORDER BY entry, number",
                )?;
                let pins = stmt
                    .query_map(params![community], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((records, pins))
            })?;
        let mut versions: BTreeMap<String, Vec<Version>> = BTreeMap::new();
        for (entry, record) in records {
            let version = serde_json::from_str(&record).map_err(|e| self.error(e))?;
            versions.entry(entry).or_default().push(version);
        }
        let mut pins: BTreeMap<String, BTreeMap<u32, String>> = BTreeMap::new();
        for (entry, number, label) in pin_rows {
            pins.entry(entry).or_default().insert(number, label);
        }
        Ok((versions, pins))
    }

    /// One version.
    pub fn version(
        &self,
        community: &str,
        entry: &str,
        number: u32,
    ) -> Result<Option<Version>, StoreError> {
        Ok(self
            .versions(community, entry)?
            .into_iter()
            .find(|v| v.number == number))
    }

    /// Start a version: the next number is taken and stored as `building` in one transaction, so
    /// no two builds get one number. `make` gives the version from its number.
    pub fn reserve(
        &self,
        community: &str,
        entry: &str,
        make: impl FnOnce(u32) -> Version,
    ) -> Result<Version, StoreError> {
        let version = self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let last: Option<u32> = tx.query_row(
                "SELECT MAX(number) FROM versions WHERE community = ?1 AND entry = ?2",
                params![community, entry],
                |r| r.get(0),
            )?;
            let version = make(last.unwrap_or(0) + 1);
            insert(&tx, community, entry, &version)?;
            tx.commit()?;
            Ok(version)
        })?;
        Ok(version)
    }

    /// Store a version as it is now.
    pub fn update(
        &self,
        community: &str,
        entry: &str,
        version: &Version,
    ) -> Result<(), StoreError> {
        self.write(|c| insert(c, community, entry, version))
    }

    /// Versions started since `since` by a community (its builds per day).
    pub fn builds_since(&self, community: &str, since: i64) -> Result<u32, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM versions WHERE community = ?1 AND started >= ?2",
                params![community, since],
                |r| r.get(0),
            )
        })
    }

    /// Versions of a community building now.
    pub fn building(&self, community: &str) -> Result<u32, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM versions WHERE community = ?1 AND state = 'building'",
                params![community],
                |r| r.get(0),
            )
        })
    }

    /// Take the entry's lease for `holder` until `now + seconds`: `false` when another holder has
    /// it and it has not run out. A holder may renew its own.
    pub fn claim(
        &self,
        community: &str,
        entry: &str,
        holder: &str,
        now: i64,
        seconds: i64,
    ) -> Result<bool, StoreError> {
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<(String, i64)> = tx
                .query_row(
                    "SELECT holder, until FROM leases WHERE community = ?1 AND entry = ?2",
                    params![community, entry],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((other, until)) = current
                && other != holder
                && until > now
            {
                return Ok(false);
            }
            tx.execute(
                "INSERT OR REPLACE INTO leases (community, entry, holder, until) VALUES (?1, ?2, ?3, ?4)",
                params![community, entry, holder, now + seconds],
            )?;
            tx.commit()?;
            Ok(true)
        })
    }

    /// Give the lease back (only `holder`'s own).
    pub fn release(&self, community: &str, entry: &str, holder: &str) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "DELETE FROM leases WHERE community = ?1 AND entry = ?2 AND holder = ?3",
                params![community, entry, holder],
            )
            .map(|_| ())
        })
    }

    /// With the lease held: versions left `building` by a holder that is gone become `failed`, so
    /// they are neither lost nor built twice. Returns their numbers.
    pub fn abandon_building(
        &self,
        community: &str,
        entry: &str,
        now: i64,
    ) -> Result<Vec<u32>, StoreError> {
        let mut abandoned = Vec::new();
        for mut v in self.versions(community, entry)? {
            if v.state == State::Building {
                v.state = State::Failed;
                v.finished = Some(now);
                v.reason = Some(
                    "the service stopped while this version was building; the next check builds it again"
                        .into(),
                );
                self.update(community, entry, &v)?;
                abandoned.push(v.number);
            }
        }
        Ok(abandoned)
    }

    pub fn record_check(
        &self,
        community: &str,
        entry: &str,
        check: &Check,
    ) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "INSERT OR REPLACE INTO checks (community, entry, checked, result, error) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![community, entry, check.checked, check.result, check.error],
            )
            .map(|_| ())
        })
    }

    pub fn last_check(&self, community: &str, entry: &str) -> Result<Option<Check>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT checked, result, error FROM checks WHERE community = ?1 AND entry = ?2",
                params![community, entry],
                |r| {
                    Ok(Check {
                        checked: r.get(0)?,
                        result: r.get(1)?,
                        error: r.get(2)?,
                    })
                },
            )
            .optional()
        })
    }

    /// The pins admins added to an entry: version -> label.
    pub fn pins(&self, community: &str, entry: &str) -> Result<BTreeMap<u32, String>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT number, label FROM pins WHERE community = ?1 AND entry = ?2 ORDER BY number",
            )?;
            let rows = stmt.query_map(params![community, entry], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Pin a version under a label; `None` removes the pin.
    pub fn pin(
        &self,
        community: &str,
        entry: &str,
        number: u32,
        label: Option<&str>,
    ) -> Result<(), StoreError> {
        self.write(|c| {
            match label {
                Some(label) => c.execute(
                    "INSERT OR REPLACE INTO pins (community, entry, number, label) VALUES (?1, ?2, ?3, ?4)",
                    params![community, entry, number, label],
                ),
                None => c.execute(
                    "DELETE FROM pins WHERE community = ?1 AND entry = ?2 AND number = ?3",
                    params![community, entry, number],
                ),
            }
            .map(|_| ())
        })
    }
}

fn insert(c: &Connection, community: &str, entry: &str, version: &Version) -> rusqlite::Result<()> {
    let record = serde_json::to_string(version)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    c.execute(
        "INSERT OR REPLACE INTO versions (community, entry, number, state, started, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            community,
            entry,
            version.number,
            version.state.as_str(),
            version.started,
            record
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn building(number: u32) -> Version {
        Version {
            number,
            commit: "abc".into(),
            image: format!("r/lab-py:v{number}-abc"),
            digest: None,
            base: None,
            contents_digest: None,
            sbom_digest: None,
            started: 100,
            finished: None,
            state: State::Building,
            reason: None,
            smoke_output: None,
            build_id: None,
            deleted: None,
            built: None,
            refresh: None,
        }
    }

    #[test]
    fn one_holder_at_a_time_until_the_lease_runs_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        // Two replicas: two connections to one file.
        let (a, b) = (
            CatalogStore::open(&path).unwrap(),
            CatalogStore::open(&path).unwrap(),
        );
        let seen_by_b = b.generation().unwrap();
        assert!(a.claim("lab", "py", "replica-a", 1000, 60).unwrap());
        assert_ne!(b.generation().unwrap(), seen_by_b, "b sees a's write");
        assert!(!b.claim("lab", "py", "replica-b", 1010, 60).unwrap());
        assert!(a.claim("lab", "py", "replica-a", 1020, 60).unwrap());
        // Replica a dies: its lease runs out, b takes it.
        assert!(b.claim("lab", "py", "replica-b", 1081, 60).unwrap());
        assert!(!a.claim("lab", "py", "replica-a", 1082, 60).unwrap());
        b.release("lab", "py", "replica-b").unwrap();
        assert!(a.claim("lab", "py", "replica-a", 1083, 60).unwrap());
    }

    #[test]
    fn numbers_are_never_given_twice_and_an_interrupted_build_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::open(&dir.path().join("c.sqlite")).unwrap();
        let v1 = store.reserve("lab", "py", building).unwrap();
        let v2 = store.reserve("lab", "py", building).unwrap();
        assert_eq!((v1.number, v2.number), (1, 2));
        assert_eq!(store.building("lab").unwrap(), 2);
        assert_eq!(store.builds_since("lab", 100).unwrap(), 2);
        assert_eq!(store.builds_since("other", 0).unwrap(), 0);
        // A restart: the next holder of the lease finds them building.
        drop(store);
        let store = CatalogStore::open(&dir.path().join("c.sqlite")).unwrap();
        assert_eq!(store.abandon_building("lab", "py", 200).unwrap(), [1, 2]);
        let versions = store.versions("lab", "py").unwrap();
        assert!(versions.iter().all(|v| v.state == State::Failed));
        assert_eq!(store.reserve("lab", "py", building).unwrap().number, 3);
    }

    #[test]
    fn pins_and_checks_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::open(&dir.path().join("c.sqlite")).unwrap();
        let before = store.generation().unwrap();
        store.pin("lab", "py", 2, Some("Fall 2026 course")).unwrap();
        assert_ne!(
            store.generation().unwrap(),
            before,
            "a write moves the generation"
        );
        assert_eq!(store.pins("lab", "py").unwrap()[&2], "Fall 2026 course");
        store.reserve("lab", "py", building).unwrap();
        store.reserve("lab", "r", building).unwrap();
        let (versions, pins) = store.community("lab").unwrap();
        assert_eq!(versions.keys().collect::<Vec<_>>(), ["py", "r"]);
        assert_eq!(pins["py"][&2], "Fall 2026 course");
        store.pin("lab", "py", 2, None).unwrap();
        assert!(store.pins("lab", "py").unwrap().is_empty());
        let check = Check {
            checked: 5,
            result: "nothing changed".into(),
            error: Some("gone".into()),
        };
        store.record_check("lab", "py", &check).unwrap();
        assert_eq!(store.last_check("lab", "py").unwrap(), Some(check));
    }
}
