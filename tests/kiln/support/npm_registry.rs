//! An npm registry on loopback (tests/services/npm-registry.py), standing in for an
//! institution's npm mirror where a test needs packages of its own: package documents and
//! tarballs as registry.npmjs.org serves them, and a log of what was asked for.

use std::process::{Child, Command, Stdio};

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
        let port = super::free_port();
        let child = Command::new("python3")
            .arg(script())
            .args(["serve", dir.path().to_str().unwrap(), &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (it serves the npm registry)");
        super::wait_for_port(port);
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
        std::fs::read_to_string(self.dir.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for NpmRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
