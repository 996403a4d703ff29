//! The fixture conda channel (tests/conda/make-channel.sh), served over HTTP on loopback for a test,
//! and the kiln command with `conda-forge` mapped to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The static file server that serves the channel, from the package folder.
const SERVE_CHANNEL: &str = "/tests/services/conda-channel.py";

/// The channel's folder: `KILN_TEST_CONDA_CHANNEL`, or where tests/run.sh builds it. Fails with the
/// command that builds it when it is missing.
pub fn channel_dir() -> PathBuf {
    let dir = std::env::var_os("KILN_TEST_CONDA_CHANNEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kiln-conda-fixture/channel"));
    assert!(
        dir.join("noarch/repodata.json").exists() && dir.join("linux-64/repodata.json").exists(),
        "the fixture conda channel is missing at {0}: build it with `bash tests/conda/make-channel.sh {0}` \
         (tests/run.sh does), or point KILN_TEST_CONDA_CHANNEL at one",
        dir.display()
    );
    dir
}

/// tests/services/conda-channel.py (a static file server) serving the channel on a free loopback port; stopped by its PID on drop.
pub struct ChannelServer {
    child: Child,
    pub port: u16,
    /// The conda package cache of this test (a fresh one: no test sees another's packages).
    pub cache: tempfile::TempDir,
}

impl ChannelServer {
    /// The fixture channel.
    pub fn start() -> ChannelServer {
        ChannelServer::serve(&channel_dir())
    }

    /// Any folder laid out as a channel.
    pub fn serve(dir: &Path) -> ChannelServer {
        ChannelServer::serve_with(dir, &[])
    }

    /// A folder whose channel the test changes: every answer says `Cache-Control: no-cache`.
    pub fn serve_uncached(dir: &Path) -> ChannelServer {
        ChannelServer::serve_with(dir, &["no-cache"])
    }

    fn serve_with(dir: &Path, args: &[&str]) -> ChannelServer {
        let port = super::free_port();
        let child = Command::new("python3")
            .arg(format!("{}{SERVE_CHANNEL}", env!("CARGO_MANIFEST_DIR")))
            .arg(port.to_string())
            .arg(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (it serves the fixture channel)");
        super::wait_for_port(port);
        ChannelServer {
            child,
            port,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// `kiln` with conda-forge mapped to this channel and this test's package cache.
    pub fn kiln(&self) -> Command {
        let mut command = super::kiln();
        command
            .env("KILN_CONDA_MIRRORS", format!("conda-forge={}", self.url()))
            .env("KILN_CONDA_CACHE", self.cache.path());
        command
    }

    pub fn cache_dir(&self) -> &Path {
        self.cache.path()
    }
}

impl Drop for ChannelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
