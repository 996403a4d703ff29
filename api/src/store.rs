//! State in an embedded SQLite database: builds and their events, so finished logs replay and a
//! restart loses nothing, and the hub servers kiln started. Builds that were running when the
//! service stopped are marked failed, with the reason, when it starts again.
//!
//! SQLite calls block, so none runs on the async worker threads: one writer thread owns the
//! connection that writes (in order, many writes per transaction), and reads run in
//! `spawn_blocking` on connections of their own (WAL lets them read while the writer writes).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::error::StoreError;

/// One build as stored.
#[derive(Clone, Debug, Serialize)]
pub struct BuildRecord {
    /// The build's id in the API (random).
    pub id: String,
    /// Its row in the database.
    #[serde(skip)]
    pub row: i64,
    /// A build from a request with credentials: never listed.
    #[serde(skip)]
    pub private: bool,
    /// The hub user a private build belongs to: only they (and the operator) see it.
    #[serde(skip)]
    pub owner: Option<String>,
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

/// A server kiln started on a JupyterHub, kept until the hub no longer has it: then a temporary user
/// is deleted, and a named server of a hub user is removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubServer {
    pub user: String,
    /// The server's name; empty for a user's default server.
    pub server: String,
    /// Whether kiln created the user for this launch.
    pub temporary: bool,
    /// The launch failed: nobody was given its URL, so it goes whatever the hub says of it (a hub
    /// restarted mid-launch may resume a spawn that kiln has given up on).
    pub failed: bool,
    /// Which hub: empty for the service's own (`KILN_HUB_URL`), else a community hub's API URL.
    pub hub: String,
}

/// What a build starts as.
#[derive(Clone, Debug)]
pub struct NewBuild<'a> {
    /// Its id in the API.
    pub id: &'a str,
    pub private: bool,
    pub owner: Option<&'a str>,
    pub provider: &'a str,
    pub spec: &'a str,
    pub repo_url: &'a str,
    pub reference: &'a str,
}

/// The state database.
pub struct Store {
    writer: mpsc::Sender<Write>,
    path: PathBuf,
    /// Idle read connections.
    readers: Arc<Mutex<Vec<Connection>>>,
}

/// Rows of a replay read at once: a long log is streamed page by page, never loaded whole.
pub const EVENT_PAGE: usize = 500;

const RESTART_REASON: &str = "the service stopped while this build was running; request it again";

/// One write, and what to do once it is committed.
struct Write {
    op: Op,
    done: Done,
}

enum Op {
    Create {
        id: String,
        private: bool,
        owner: Option<String>,
        provider: String,
        spec: String,
        repo_url: String,
        reference: String,
    },
    Append {
        id: i64,
        seq: usize,
        event: String,
    },
    Finish {
        id: i64,
        image: Option<String>,
        reason: Option<String>,
    },
    AddHubServer(HubServer),
    RemoveHubServer(HubServer),
    /// Answers 1 when stored, 0 when the user has `max` credentials for other hosts already.
    PutCredential {
        credential: SealedCredential,
        max: usize,
    },
    /// Answers the rows removed.
    DeleteCredential {
        user: String,
        host: String,
    },
}

/// A hub user's git credential as stored: the secret only sealed (see `credentials.rs`).
#[derive(Clone)]
pub struct SealedCredential {
    pub user: String,
    pub host: String,
    pub username: String,
    /// The nonce, then the sealed secret.
    pub sealed: Vec<u8>,
    pub created: i64,
}

impl std::fmt::Debug for SealedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedCredential")
            .field("user", &self.user)
            .field("host", &self.host)
            .field("username", &self.username)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

enum Done {
    /// Someone waits for the result (the new row's id for a create).
    Reply(oneshot::Sender<Result<i64, StoreError>>),
    /// Run after the write (in order with every other write): watchers learn of an event only
    /// once it is stored.
    Then(Box<dyn FnOnce() + Send>),
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const COLUMNS: &str = "public_id, id, private, owner, provider, spec, repo_url, ref, status, image, reason, started, finished";

const SCHEMA: &str = "PRAGMA journal_mode = WAL;
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
         failed INTEGER NOT NULL DEFAULT 0, hub TEXT NOT NULL DEFAULT '', PRIMARY KEY (user, server));
     CREATE TABLE IF NOT EXISTS git_credentials (
         user TEXT NOT NULL, host TEXT NOT NULL, username TEXT NOT NULL, sealed BLOB NOT NULL,
         created INTEGER NOT NULL, PRIMARY KEY (user, host));";

impl Store {
    /// Open (or create) the database, mark builds left running by a previous process as failed,
    /// and start the writer thread. Called once at start-up.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
        let conn = Connection::open(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        recover(&conn)?;
        let (writer, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("kiln-store".into())
            .spawn(move || write_loop(conn, queue))
            .map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                reason: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Store {
            writer,
            path: path.to_path_buf(),
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    fn send(&self, op: Op, done: Done) -> Result<(), StoreError> {
        self.writer
            .send(Write { op, done })
            .map_err(|_| StoreError::Stopped)
    }

    /// Write and wait until it is committed.
    async fn write(&self, op: Op) -> Result<i64, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(op, Done::Reply(tx))?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Write, then run `then` (also when the write failed: the failure is logged).
    fn write_then(&self, op: Op, then: impl FnOnce() + Send + 'static) {
        if let Err(Write { done, .. }) = self
            .writer
            .send(Write {
                op,
                done: Done::Then(Box::new(then)),
            })
            .map_err(|e| e.0)
        {
            tracing::error!("the state database's writer has stopped; an event was not stored");
            if let Done::Then(then) = done {
                then();
            }
        }
    }

    /// Run `read` on a read connection, off the async worker threads.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (readers, path) = (self.readers.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let idle = readers.lock().ok().and_then(|mut r| r.pop());
            let conn = match idle {
                Some(conn) => conn,
                None => Connection::open(&path)?,
            };
            let result = read(&conn);
            if let Ok(mut idle) = readers.lock()
                && idle.len() < 8
            {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::NotCommitted(format!("a read stopped: {e}")))?
    }

    /// Record a new running build; returns its id.
    pub async fn create(&self, build: NewBuild<'_>) -> Result<i64, StoreError> {
        self.write(Op::Create {
            id: build.id.into(),
            private: build.private,
            owner: build.owner.map(String::from),
            provider: build.provider.into(),
            spec: build.spec.into(),
            repo_url: build.repo_url.into(),
            reference: build.reference.into(),
        })
        .await
    }

    /// Store event `seq` of a build, then run `then`.
    pub fn append(&self, id: i64, seq: usize, event: &Value, then: impl FnOnce() + Send + 'static) {
        self.write_then(
            Op::Append {
                id,
                seq,
                event: event.to_string(),
            },
            then,
        );
    }

    /// Mark a build built (with its image) or failed (with the reason), then run `then`.
    pub fn finish(
        &self,
        id: i64,
        image: Option<&str>,
        reason: Option<&str>,
        then: impl FnOnce() + Send + 'static,
    ) {
        self.write_then(
            Op::Finish {
                id,
                image: image.map(String::from),
                reason: reason.map(String::from),
            },
            then,
        );
    }

    /// Mark a build built or failed and wait until it is stored.
    pub async fn finish_now(
        &self,
        id: i64,
        image: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.write(Op::Finish {
            id,
            image: image.map(String::from),
            reason: reason.map(String::from),
        })
        .await
        .map(|_| ())
    }

    /// A build by its API id.
    pub async fn get(&self, id: &str) -> Result<Option<BuildRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {COLUMNS} FROM builds WHERE public_id = ?1"),
                    [id],
                    record,
                )
                .optional()?)
        })
        .await
    }

    /// At most `limit` events of a build from `from` on.
    pub async fn events(
        &self,
        id: i64,
        from: usize,
        limit: usize,
    ) -> Result<Vec<Value>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT event FROM events WHERE build_id = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = statement
                .query_map(
                    params![
                        id,
                        i64::try_from(from).unwrap_or(i64::MAX),
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    |r| r.get::<_, String>(0),
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .iter()
                .filter_map(|e| serde_json::from_str(e).ok())
                .collect())
        })
        .await
    }

    /// Images built, newest first; builds from requests with credentials only when
    /// `with_private` (the operator) or when they belong to `owner`.
    pub async fn images(
        &self,
        with_private: bool,
        owner: Option<&str>,
    ) -> Result<Vec<BuildRecord>, StoreError> {
        let owner = owner.map(String::from);
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM builds
                 WHERE status = 'built' AND (private = 0 OR ?1 OR (owner IS NOT NULL AND owner = ?2))
                 ORDER BY finished DESC, id DESC LIMIT 1000"
            ))?;
            let rows = statement
                .query_map(params![with_private, owner], record)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn add_hub_server(&self, s: &HubServer) -> Result<(), StoreError> {
        self.write(Op::AddHubServer(s.clone())).await.map(|_| ())
    }

    pub async fn remove_hub_server(&self, s: &HubServer) -> Result<(), StoreError> {
        self.write(Op::RemoveHubServer(s.clone())).await.map(|_| ())
    }

    /// Store a user's credential for a host (replacing theirs for that host); `false` when they
    /// have `max` credentials for other hosts already.
    pub async fn put_credential(
        &self,
        credential: SealedCredential,
        max: usize,
    ) -> Result<bool, StoreError> {
        self.write(Op::PutCredential { credential, max })
            .await
            .map(|n| n > 0)
    }

    /// Remove a user's credential for a host; `false` when there was none.
    pub async fn delete_credential(&self, user: &str, host: &str) -> Result<bool, StoreError> {
        self.write(Op::DeleteCredential {
            user: user.into(),
            host: host.into(),
        })
        .await
        .map(|n| n > 0)
    }

    /// A user's credentials, by host; for one host only when `host` is given.
    pub async fn credentials(
        &self,
        user: &str,
        host: Option<&str>,
    ) -> Result<Vec<SealedCredential>, StoreError> {
        let (user, host) = (user.to_string(), host.map(String::from));
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT user, host, username, sealed, created FROM git_credentials
                 WHERE user = ?1 AND (?2 IS NULL OR host = ?2) ORDER BY host",
            )?;
            let rows = statement
                .query_map(params![user, host], |r| {
                    Ok(SealedCredential {
                        user: r.get(0)?,
                        host: r.get(1)?,
                        username: r.get(2)?,
                        sealed: r.get(3)?,
                        created: r.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// The servers kiln started on one hub (`""`: the service's own), oldest first.
    pub async fn hub_servers(&self, hub: &str) -> Result<Vec<HubServer>, StoreError> {
        let hub = hub.to_string();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT user, server, temporary, failed, hub FROM hub_servers WHERE hub = ?1 ORDER BY created",
            )?;
            let rows = statement
                .query_map([&hub], |r| {
                    Ok(HubServer {
                        user: r.get(0)?,
                        server: r.get(1)?,
                        temporary: r.get(2)?,
                        failed: r.get(3)?,
                        hub: r.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

/// Databases of earlier versions get the columns added since: a random public id for every build
/// (integer ids were guessable), the private flag and the owner of a private build.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('builds')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if !columns.iter().any(|c| c == "public_id") {
        conn.execute_batch(
            "ALTER TABLE builds ADD COLUMN public_id TEXT;
             UPDATE builds SET public_id = lower(hex(randomblob(16))) WHERE public_id IS NULL;",
        )?;
    }
    if !columns.iter().any(|c| c == "private") {
        conn.execute_batch("ALTER TABLE builds ADD COLUMN private INTEGER NOT NULL DEFAULT 0;")?;
    }
    if !columns.iter().any(|c| c == "owner") {
        conn.execute_batch("ALTER TABLE builds ADD COLUMN owner TEXT;")?;
    }
    conn.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS builds_public_id ON builds (public_id);",
    )?;
    let hub_columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('hub_servers')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if !hub_columns.iter().any(|c| c == "failed") {
        conn.execute_batch(
            "ALTER TABLE hub_servers ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    if !hub_columns.iter().any(|c| c == "hub") {
        conn.execute_batch("ALTER TABLE hub_servers ADD COLUMN hub TEXT NOT NULL DEFAULT '';")?;
    }
    Ok(())
}

/// Builds left running by a previous process are failed, with the reason as their last event.
fn recover(conn: &Connection) -> Result<(), StoreError> {
    let running: Vec<i64> = conn
        .prepare("SELECT id FROM builds WHERE status = 'running'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in running {
        let seq: i64 = conn.query_row(
            "SELECT COALESCE(MAX(seq) + 1, 0) FROM events WHERE build_id = ?1",
            [id],
            |r| r.get(0),
        )?;
        let event =
            serde_json::json!({"phase": "failed", "message": format!("{RESTART_REASON}\n")});
        conn.execute(
            "INSERT OR IGNORE INTO events (build_id, seq, event) VALUES (?1, ?2, ?3)",
            params![id, seq, event.to_string()],
        )?;
        conn.execute(
            "UPDATE builds SET status = 'failed', reason = ?2, finished = ?3 WHERE id = ?1",
            params![id, RESTART_REASON, now()],
        )?;
    }
    Ok(())
}

/// The writer thread: takes every write that is waiting, commits them in one transaction, then
/// answers or runs what follows each, in order. Ends when the store is dropped.
fn write_loop(mut conn: Connection, queue: mpsc::Receiver<Write>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < 1000
            && let Ok(next) = queue.try_recv()
        {
            batch.push(next);
        }
        let results: Vec<Result<i64, StoreError>> = match conn.transaction() {
            Ok(tx) => {
                let results = batch.iter().map(|w| apply(&tx, &w.op)).collect();
                match tx.commit() {
                    Ok(()) => results,
                    Err(e) => {
                        let message = e.to_string();
                        batch
                            .iter()
                            .map(|_| Err(StoreError::NotCommitted(message.clone())))
                            .collect()
                    }
                }
            }
            Err(e) => {
                let message = e.to_string();
                batch
                    .iter()
                    .map(|_| Err(StoreError::NotCommitted(message.clone())))
                    .collect()
            }
        };
        for (write, result) in batch.into_iter().zip(results) {
            match write.done {
                Done::Reply(reply) => {
                    let _ = reply.send(result);
                }
                Done::Then(then) => {
                    if let Err(e) = result {
                        tracing::error!("cannot store a build's state: {e}");
                    }
                    then();
                }
            }
        }
    }
}

fn apply(conn: &Connection, op: &Op) -> Result<i64, StoreError> {
    match op {
        Op::Create {
            id,
            private,
            owner,
            provider,
            spec,
            repo_url,
            reference,
        } => {
            conn.execute(
                "INSERT INTO builds (public_id, private, owner, provider, spec, repo_url, ref, status, started) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8)",
                params![id, private, owner, provider, spec, repo_url, reference, now()],
            )?;
            Ok(conn.last_insert_rowid())
        }
        Op::Append { id, seq, event } => {
            conn.execute(
                "INSERT OR REPLACE INTO events (build_id, seq, event) VALUES (?1, ?2, ?3)",
                params![id, *seq as i64, event],
            )?;
            Ok(0)
        }
        Op::Finish { id, image, reason } => {
            let status = if image.is_some() { "built" } else { "failed" };
            conn.execute(
                "UPDATE builds SET status = ?2, image = ?3, reason = ?4, finished = ?5 WHERE id = ?1 AND status = 'running'",
                params![id, status, image, reason, now()],
            )?;
            Ok(0)
        }
        Op::AddHubServer(s) => {
            conn.execute(
                "INSERT OR REPLACE INTO hub_servers (user, server, temporary, created, failed, hub) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.user, s.server, s.temporary, now(), s.failed, s.hub],
            )?;
            Ok(0)
        }
        Op::PutCredential { credential: c, max } => Ok(conn.execute(
            "INSERT OR REPLACE INTO git_credentials (user, host, username, sealed, created)
             SELECT ?1, ?2, ?3, ?4, ?5
             WHERE (SELECT COUNT(*) FROM git_credentials WHERE user = ?1 AND host != ?2) < ?6",
            params![
                c.user,
                c.host,
                c.username,
                c.sealed,
                c.created,
                i64::try_from(*max).unwrap_or(i64::MAX)
            ],
        )? as i64),
        Op::DeleteCredential { user, host } => Ok(conn.execute(
            "DELETE FROM git_credentials WHERE user = ?1 AND host = ?2",
            params![user, host],
        )? as i64),
        Op::RemoveHubServer(s) => {
            conn.execute(
                "DELETE FROM hub_servers WHERE user = ?1 AND server = ?2 AND hub = ?3",
                params![s.user, s.server, s.hub],
            )?;
            Ok(0)
        }
    }
}

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<BuildRecord> {
    Ok(BuildRecord {
        id: r.get(0)?,
        row: r.get(1)?,
        private: r.get(2)?,
        owner: r.get(3)?,
        provider: r.get(4)?,
        spec: r.get(5)?,
        repo_url: r.get(6)?,
        reference: r.get(7)?,
        status: r.get(8)?,
        image: r.get(9)?,
        reason: r.get(10)?,
        started: r.get(11)?,
        finished: r.get(12)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build<'a>(spec: &'a str, url: &'a str) -> NewBuild<'a> {
        NewBuild {
            id: spec,
            private: false,
            owner: None,
            provider: "gh",
            spec,
            repo_url: url,
            reference: "HEAD",
        }
    }

    #[tokio::test]
    async fn a_database_from_before_failed_launches_were_recorded_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE hub_servers (user TEXT NOT NULL, server TEXT NOT NULL, temporary INTEGER NOT NULL,
             created INTEGER NOT NULL, PRIMARY KEY (user, server));
             INSERT INTO hub_servers VALUES ('binder-old', '', 1, 0);",
        )
        .unwrap();
        drop(old);
        let store = Store::open(&path).unwrap();
        let failed = HubServer {
            user: "binder-new".into(),
            server: String::new(),
            temporary: true,
            failed: true,
            hub: String::new(),
        };
        store.add_hub_server(&failed).await.unwrap();
        // A server on a community's hub is that hub's, not the service's.
        let elsewhere = HubServer {
            user: "binder-community".into(),
            hub: "http://127.0.0.1:1/hub/api/".into(),
            ..failed.clone()
        };
        store.add_hub_server(&elsewhere).await.unwrap();
        assert_eq!(
            store.hub_servers(&elsewhere.hub).await.unwrap(),
            [elsewhere]
        );
        let servers = store.hub_servers("").await.unwrap();
        assert_eq!(servers.len(), 2);
        assert!(
            !servers[0].failed,
            "the old row is a launch that did not fail"
        );
        assert_eq!(servers[1], failed);
    }

    #[tokio::test]
    async fn builds_survive_a_restart_and_running_ones_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        let done = store
            .create(build("a/b/HEAD", "https://github.com/a/b"))
            .await
            .unwrap();
        let event = serde_json::json!({"phase": "building", "message": "x\n"});
        store.append(done, 0, &event, || {});
        store.finish_now(done, Some("img:1"), None).await.unwrap();
        let running = store
            .create(build("c/d/HEAD", "https://github.com/c/d"))
            .await
            .unwrap();
        assert_ne!(done, running, "each build gets its own row");
        let (tx, rx) = oneshot::channel();
        store.append(running, 0, &event, move || {
            let _ = tx.send(());
        });
        rx.await.unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.get("a/b/HEAD").await.unwrap().unwrap().status,
            "built"
        );
        let failed = store.get("c/d/HEAD").await.unwrap().unwrap();
        assert_eq!(failed.status, "failed");
        assert!(failed.reason.unwrap().contains("stopped"));
        let events = store.events(running, 0, EVENT_PAGE).await.unwrap();
        assert_eq!(events.last().unwrap()["phase"], "failed");
        assert_eq!(store.images(false, None).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_event_is_stored_before_watchers_hear_of_it_and_replays_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("state.db")).unwrap());
        let id = store.create(build("a/b/HEAD", "u")).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for seq in 0..1200 {
            let (store, tx) = (store.clone(), tx.clone());
            let event = serde_json::json!({"phase": "building", "message": format!("{seq}\n")});
            store.clone().append(id, seq, &event, move || {
                let _ = tx.send(seq);
            });
            drop(store);
        }
        drop(tx);
        let mut heard = Vec::new();
        while let Some(seq) = rx.recv().await {
            heard.push(seq);
        }
        assert_eq!(heard, (0..1200).collect::<Vec<_>>(), "in order, every one");
        let first = store.events(id, 0, EVENT_PAGE).await.unwrap();
        assert_eq!(first.len(), EVENT_PAGE);
        let last = store.events(id, 1000, EVENT_PAGE).await.unwrap();
        assert_eq!(last.len(), 200);
        assert_eq!(last[0]["message"], "1000\n");
    }

    #[tokio::test]
    async fn a_failed_insert_is_an_error_not_a_stale_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        store.create(build("a/b/HEAD", "u")).await.unwrap();
        assert!(
            store.create(build("a/b/HEAD", "u")).await.is_err(),
            "ids are unique"
        );
        // Another process makes the table unusable under the store.
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch("DROP TABLE events; DROP TABLE builds;")
            .unwrap();
        assert!(store.create(build("c/d/HEAD", "u")).await.is_err());
    }
}
