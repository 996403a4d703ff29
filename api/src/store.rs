//! State in an embedded SQLite database: builds and their events, so finished logs replay and a
//! restart loses nothing. Builds that were running when the service stopped are marked failed, with
//! the reason, when it starts again.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

/// One build as stored.
#[derive(Clone, Debug, Serialize)]
pub struct BuildRecord {
    pub id: i64,
    pub provider: String,
    pub spec: String,
    pub repo_url: String,
    #[serde(rename = "ref")]
    pub reference: String,
    /// `running`, `built` or `failed`.
    pub status: String,
    pub image: Option<String>,
    pub reason: Option<String>,
    pub started: i64,
    pub finished: Option<i64>,
}

pub struct Store {
    conn: Mutex<Connection>,
}

const RESTART_REASON: &str = "the service stopped while this build was running; request it again";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Open (or create) the database and mark builds left running by a previous process as failed.
    pub fn open(path: &Path) -> Result<Store, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| format!("cannot open the state database {}: {e}", path.display()))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS builds (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 provider TEXT NOT NULL, spec TEXT NOT NULL, repo_url TEXT NOT NULL, ref TEXT NOT NULL,
                 status TEXT NOT NULL, image TEXT, reason TEXT, started INTEGER NOT NULL, finished INTEGER);
             CREATE TABLE IF NOT EXISTS events (
                 build_id INTEGER NOT NULL REFERENCES builds(id), seq INTEGER NOT NULL, event TEXT NOT NULL,
                 PRIMARY KEY (build_id, seq));
             CREATE TABLE IF NOT EXISTS hub_servers (
                 user TEXT NOT NULL, server TEXT NOT NULL, temporary INTEGER NOT NULL, created INTEGER NOT NULL,
                 PRIMARY KEY (user, server));",
        )
        .map_err(|e| format!("cannot prepare the state database: {e}"))?;
        let store = Store {
            conn: Mutex::new(conn),
        };
        store.recover();
        Ok(store)
    }

    fn recover(&self) {
        let conn = self.conn.lock().expect("store lock");
        let running: Vec<i64> = conn
            .prepare("SELECT id FROM builds WHERE status = 'running'")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .unwrap_or_default();
        for id in running {
            let seq: i64 = conn
                .query_row(
                    "SELECT COALESCE(MAX(seq) + 1, 0) FROM events WHERE build_id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            let event =
                serde_json::json!({"phase": "failed", "message": format!("{RESTART_REASON}\n")});
            let _ = conn.execute(
                "INSERT OR IGNORE INTO events (build_id, seq, event) VALUES (?1, ?2, ?3)",
                params![id, seq, event.to_string()],
            );
            let _ = conn.execute(
                "UPDATE builds SET status = 'failed', reason = ?2, finished = ?3 WHERE id = ?1",
                params![id, RESTART_REASON, now()],
            );
        }
    }

    pub fn create(&self, provider: &str, spec: &str, repo_url: &str, reference: &str) -> i64 {
        let conn = self.conn.lock().expect("store lock");
        let _ = conn.execute(
            "INSERT INTO builds (provider, spec, repo_url, ref, status, started) VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
            params![provider, spec, repo_url, reference, now()],
        );
        conn.last_insert_rowid()
    }

    pub fn append(&self, id: i64, seq: usize, event: &Value) {
        let conn = self.conn.lock().expect("store lock");
        let _ = conn.execute(
            "INSERT OR REPLACE INTO events (build_id, seq, event) VALUES (?1, ?2, ?3)",
            params![id, seq as i64, event.to_string()],
        );
    }

    pub fn finish(&self, id: i64, image: Option<&str>, reason: Option<&str>) {
        let status = if image.is_some() { "built" } else { "failed" };
        let conn = self.conn.lock().expect("store lock");
        let _ = conn.execute(
            "UPDATE builds SET status = ?2, image = ?3, reason = ?4, finished = ?5 WHERE id = ?1",
            params![id, status, image, reason, now()],
        );
    }

    pub fn get(&self, id: i64) -> Option<BuildRecord> {
        let conn = self.conn.lock().expect("store lock");
        conn.query_row(
            "SELECT id, provider, spec, repo_url, ref, status, image, reason, started, finished FROM builds WHERE id = ?1",
            [id],
            record,
        )
        .optional()
        .ok()
        .flatten()
    }

    /// Events of a build from `from` on.
    pub fn events(&self, id: i64, from: usize) -> Vec<Value> {
        let conn = self.conn.lock().expect("store lock");
        conn.prepare("SELECT event FROM events WHERE build_id = ?1 AND seq >= ?2 ORDER BY seq")
            .and_then(|mut s| {
                s.query_map(params![id, from as i64], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap_or_default()
            .iter()
            .filter_map(|e| serde_json::from_str(e).ok())
            .collect()
    }

    /// Images built, newest first (for communities curating their defaults).
    pub fn images(&self) -> Vec<BuildRecord> {
        let conn = self.conn.lock().expect("store lock");
        conn.prepare(
            "SELECT id, provider, spec, repo_url, ref, status, image, reason, started, finished FROM builds
             WHERE status = 'built' ORDER BY finished DESC, id DESC LIMIT 1000",
        )
        .and_then(|mut s| s.query_map([], record)?.collect())
        .unwrap_or_default()
    }
}

/// A server kiln started on a JupyterHub, kept until the hub no longer has it: then a temporary user
/// is deleted, and a named server of a hub user is removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubServer {
    pub user: String,
    /// The server's name; empty for a user's default server.
    pub server: String,
    /// Whether kiln created the user for this launch.
    pub temporary: bool,
}

impl Store {
    pub fn add_hub_server(&self, s: &HubServer) {
        let conn = self.conn.lock().expect("store lock");
        let _ = conn.execute(
            "INSERT OR REPLACE INTO hub_servers (user, server, temporary, created) VALUES (?1, ?2, ?3, ?4)",
            params![s.user, s.server, s.temporary, now()],
        );
    }

    pub fn remove_hub_server(&self, s: &HubServer) {
        let conn = self.conn.lock().expect("store lock");
        let _ = conn.execute(
            "DELETE FROM hub_servers WHERE user = ?1 AND server = ?2",
            params![s.user, s.server],
        );
    }

    pub fn hub_servers(&self) -> Vec<HubServer> {
        let conn = self.conn.lock().expect("store lock");
        conn.prepare("SELECT user, server, temporary FROM hub_servers ORDER BY created")
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok(HubServer {
                        user: r.get(0)?,
                        server: r.get(1)?,
                        temporary: r.get(2)?,
                    })
                })?
                .collect()
            })
            .unwrap_or_default()
    }
}

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<BuildRecord> {
    Ok(BuildRecord {
        id: r.get(0)?,
        provider: r.get(1)?,
        spec: r.get(2)?,
        repo_url: r.get(3)?,
        reference: r.get(4)?,
        status: r.get(5)?,
        image: r.get(6)?,
        reason: r.get(7)?,
        started: r.get(8)?,
        finished: r.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_survive_a_restart_and_running_ones_fail() {
        let dir = std::env::temp_dir().join(format!("kiln-store-{}", std::process::id()));
        let path = dir.join("state.db");
        let _ = std::fs::remove_file(&path);
        let store = Store::open(&path).unwrap();
        let done = store.create("gh", "a/b/HEAD", "https://github.com/a/b", "HEAD");
        store.append(
            done,
            0,
            &serde_json::json!({"phase": "building", "message": "x\n"}),
        );
        store.finish(done, Some("img:1"), None);
        let running = store.create("gh", "c/d/HEAD", "https://github.com/c/d", "HEAD");
        store.append(
            running,
            0,
            &serde_json::json!({"phase": "building", "message": "y\n"}),
        );
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.get(done).unwrap().status, "built");
        let failed = store.get(running).unwrap();
        assert_eq!(failed.status, "failed");
        assert!(failed.reason.unwrap().contains("stopped"));
        assert_eq!(store.events(running, 0).last().unwrap()["phase"], "failed");
        assert_eq!(store.images().len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
