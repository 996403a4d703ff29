//! A PEP 503 Python package index on loopback (tests/services/package-index.py), standing in for
//! PyPI where a test needs an index it can change: wheels published by the test,
//! listed with their sha256 as PyPI lists them.

use std::process::Child;

const SCRIPT: &str = "package-index.py";

/// The index, served on a free loopback port; stopped by its PID on drop.
pub struct PackageIndex {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl PackageIndex {
    pub fn start() -> PackageIndex {
        PackageIndex::serve(None)
    }

    /// A mirror: its own projects, and PyPI's pages for every other project (the files stay on
    /// PyPI's file host); it records which projects were asked for ([`PackageIndex::requested`]).
    pub fn mirror_of_pypi() -> PackageIndex {
        PackageIndex::serve(Some("https://pypi.org/simple/"))
    }

    fn serve(upstream: Option<&str>) -> PackageIndex {
        let dir = tempfile::tempdir().unwrap();
        let upstream: Vec<&str> = upstream.into_iter().collect();
        let (child, port) = super::serve_python(SCRIPT, dir.path(), &upstream);
        PackageIndex { child, port, dir }
    }

    /// The index URL for `--index-url` / `--extra-index-url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/simple/", self.port)
    }

    /// The projects a mirror was asked for, in order (normalised names).
    pub fn requested(&self) -> Vec<String> {
        super::requests_log(self.dir.path())
    }

    /// Publish a pure-Python wheel `name` `version` (module `name` with `_`, whose `__version__`
    /// is `version`); returns the wheel's sha256.
    pub fn publish(&self, name: &str, version: &str) -> String {
        super::run_python(SCRIPT, "publish", self.dir.path(), &[name, version])
    }

    /// Publish only a source archive of `name` `version`, whose build (its setup.py) fails when a
    /// path matching `glob` is under kiln's uv cache: a probe of what a package that a repository
    /// names can see there.
    pub fn publish_probe(&self, name: &str, version: &str, glob: &str) {
        super::run_python(SCRIPT, "probe", self.dir.path(), &[name, version, glob]);
    }
}

impl Drop for PackageIndex {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
