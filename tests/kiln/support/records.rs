//! A DOI resolver and a Zenodo-like InvenioRDM installation on loopback (tests/services/records.py),
//! standing in for doi.org and zenodo.org, which this machine cannot reach; and the zip archives
//! records hold.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The server, answering from `site.json` in its folder; stopped by its PID on drop.
pub struct RecordServer {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl RecordServer {
    /// Serve `site` (see tests/services/records.py; `PORT` in it becomes the server's port).
    pub fn start(site: &str) -> RecordServer {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        std::fs::create_dir_all(dir.path().join("files")).unwrap();
        let server = RecordServer {
            child: Command::new("python3")
                .arg(format!(
                    "{}/tests/services/records.py",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .arg(port.to_string())
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 runs (it serves the records)"),
            port,
            dir,
        };
        server.site(site);
        super::wait_for_port(port);
        server
    }

    /// Replace the site file.
    pub fn site(&self, site: &str) {
        std::fs::write(
            self.dir.path().join("site.json"),
            site.replace("PORT", &self.port.to_string()),
        )
        .unwrap();
    }

    /// `files/<name>`: a zip of `tree` (path, content) pairs; a path whose name is `verify`,
    /// `postBuild` or `start` is executable.
    pub fn zip(&self, name: &str, tree: &[(&str, &str)]) {
        let script = "import json, sys, zipfile\n\
                      with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    \
                      for path, text in json.load(sys.stdin):\n        \
                      info = zipfile.ZipInfo(path, (2024, 1, 2, 3, 4, 5))\n        \
                      info.compress_type = zipfile.ZIP_DEFLATED\n        \
                      executable = path.rsplit('/', 1)[-1] in ('verify', 'postBuild', 'start')\n        \
                      info.external_attr = (0o100755 if executable else 0o100644) << 16\n        \
                      z.writestr(info, text)\n";
        self.write_archive(script, name, tree);
    }

    /// `files/<name>`: a tar.gz of `tree` (path, content) pairs, as the vault gives them.
    pub fn tar_gz(&self, name: &str, tree: &[(&str, &str)]) {
        let script = "import io, json, sys, tarfile\n\
                      with tarfile.open(sys.argv[1], 'w:gz') as t:\n    \
                      for path, text in json.load(sys.stdin):\n        \
                      data = text.encode()\n        \
                      info = tarfile.TarInfo(path)\n        \
                      info.size = len(data)\n        \
                      info.mode = 0o755 if path.endswith('verify') else 0o644\n        \
                      t.addfile(info, io.BytesIO(data))\n";
        self.write_archive(script, name, tree);
    }

    /// Run the Python `script` with `files/<name>` as its argument and `tree` as JSON on its input.
    fn write_archive(&self, script: &str, name: &str, tree: &[(&str, &str)]) {
        use std::io::Write;
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(self.dir.path().join("files").join(name))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(serde_json::to_string(tree).unwrap().as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// `files/<name>` with `content`.
    pub fn file(&self, name: &str, content: &[u8]) {
        std::fs::write(self.dir.path().join("files").join(name), content).unwrap();
    }

    /// `kiln` looking up DOIs and records here.
    pub fn kiln(&self) -> Command {
        let mut command = super::kiln();
        command.envs(self.env());
        command
    }

    /// The settings that send kiln's record lookups here: the DOI resolver, and this server as
    /// an InvenioRDM, Figshare (and its API) and Dataverse host.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let host = format!("127.0.0.1:{}", self.port);
        vec![
            ("KILN_DOI_RESOLVER", format!("http://{host}/")),
            ("KILN_INVENIO_HOSTS", host.clone()),
            ("KILN_FIGSHARE_HOSTS", host.clone()),
            ("KILN_FIGSHARE_API", format!("http://{host}/v2/")),
            ("KILN_DATAVERSE_HOSTS", host.clone()),
            ("KILN_HYDROSHARE_HOSTS", host.clone()),
            ("KILN_SWH_API", format!("http://{host}/api/1/")),
        ]
    }

    /// How many requests for `path_part` were answered with `status`.
    pub fn requests(&self, status: u16, path_part: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(&format!("{status} ")) && l.contains(path_part))
            .count()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RecordServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
