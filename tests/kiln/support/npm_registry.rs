//! An npm registry on loopback (tests/services/npm-registry.py), standing in for an
//! institution's npm mirror where a test needs packages of its own: package documents and
//! tarballs as registry.npmjs.org serves them, and a log of what was asked for.

use std::process::Child;

const SCRIPT: &str = "npm-registry.py";

/// The registry, served on a free loopback port; stopped by its PID on drop.
pub struct NpmRegistry {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl NpmRegistry {
    pub fn start() -> NpmRegistry {
        let dir = tempfile::tempdir().unwrap();
        let (child, port) = super::serve_python(SCRIPT, dir.path(), &[]);
        NpmRegistry { child, port, dir }
    }

    /// The registry URL for `NPM_CONFIG_REGISTRY` / `KILN_NPM_REGISTRY`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Publish `name` `version`: a package whose main module exports `version`.
    pub fn publish(&self, name: &str, version: &str) {
        super::run_python(SCRIPT, "publish", self.dir.path(), &[name, version]);
    }

    /// The paths asked for, in order.
    pub fn requested(&self) -> Vec<String> {
        super::requests_log(self.dir.path())
    }
}

impl Drop for NpmRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
