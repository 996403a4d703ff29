//! A CRAN-like R package repository on loopback (tests/services/cran.py), standing in for CRAN and
//! Posit Package Manager's dated snapshots, which this machine cannot reach: tinypkg, tinydep
//! (imports tinypkg) and tinyc (C code), served only under the snapshots a test names.

use std::process::{Child, Command, Stdio};

const SCRIPT: &str = "/tests/services/cran.py";

fn script() -> String {
    format!("{}{SCRIPT}", env!("CARGO_MANIFEST_DIR"))
}

/// The repository, served on a free loopback port; stopped by its PID on drop.
pub struct CranRepo {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl CranRepo {
    /// Serve the packages at `/cran/<snapshot>/` for each of `snapshots` (`2023-01-01`, `latest`).
    pub fn start(snapshots: &[&str]) -> CranRepo {
        let dir = tempfile::tempdir().unwrap();
        let made = Command::new("python3")
            .arg(script())
            .arg("make")
            .arg(dir.path())
            .status()
            .expect("python3 runs (it makes the CRAN-like repository)");
        assert!(made.success());
        let port = super::free_port();
        let child = Command::new("python3")
            .arg(script())
            .arg("serve")
            .arg(dir.path())
            .arg(port.to_string())
            .args(snapshots)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        super::wait_for_port(port);
        CranRepo { child, port, dir }
    }

    /// `KILN_CRAN_URL` for this repository: the snapshot URL template.
    pub fn url_template(&self) -> String {
        format!("http://127.0.0.1:{}/cran/{{date}}", self.port)
    }

    /// Every request so far, as `STATUS PATH`.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// How many times a package's tarball was downloaded (answered 200).
    pub fn downloads(&self, tarball: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with("200 ") && r.ends_with(&format!("/src/contrib/{tarball}")))
            .count()
    }
}

impl Drop for CranRepo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
