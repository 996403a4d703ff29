//! An npm registry on loopback (tests/services/npm-registry.py), standing in for an
//! institution's npm mirror where a test needs packages of its own: package documents and
//! tarballs as registry.npmjs.org serves them, and a log of what was asked for.

use std::process::{Child, Command};

const SCRIPT: &str = "/tests/services/npm-registry.py";

/// The registry, served on a free loopback port; stopped by its PID on drop.
pub struct NpmRegistry {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn script() -> String {
    format!("{}{SCRIPT}", env!("CARGO_MANIFEST_DIR"))
}

impl NpmRegistry {
    pub fn start() -> NpmRegistry {
        let dir = tempfile::tempdir().unwrap();
        let (child, port) = super::serve_python("npm-registry.py", dir.path(), &[]);
        NpmRegistry { child, port, dir }
    }

    /// The registry URL for `NPM_CONFIG_REGISTRY` / `KILN_NPM_REGISTRY`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Publish `name` `version`: a package whose main module exports `version`.
    pub fn publish(&self, name: &str, version: &str) {
        let out = Command::new("python3")
            .arg(script())
            .args(["publish", self.dir.path().to_str().unwrap(), name, version])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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
