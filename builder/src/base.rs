//! The default base image, made locally when it cannot be pulled: `debootstrap --variant=minbase`
//! of a Debian suite, with its updates and security suites enabled, imported into the engine.

use std::path::Path;
use std::process::Stdio;

use crate::engine::Engine;
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};

/// What to bootstrap.
#[derive(Clone, Debug)]
pub struct BaseSpec {
    pub image: String,
    pub suite: String,
    pub mirror: String,
}

impl Default for BaseSpec {
    fn default() -> Self {
        BaseSpec {
            image: kiln_buildpacks::options::DEFAULT_BASE_IMAGE.to_string(),
            suite: "bookworm".to_string(),
            mirror: "http://deb.debian.org/debian".to_string(),
        }
    }
}

/// Make the base image unless the engine has it. Returns whether it was made.
pub async fn bootstrap(
    engine: &Engine,
    spec: &BaseSpec,
    sink: &mut dyn EventSink,
) -> Result<bool, BuildError> {
    if engine.image_labels(&spec.image).await?.is_some() {
        sink.emit(Event::new(
            Phase::Built,
            format!("{} exists already; nothing to do", spec.image),
        ));
        return Ok(false);
    }
    let (repo, tag) = spec
        .image
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .unwrap_or((spec.image.as_str(), "latest"));
    let debootstrap = ["/usr/sbin/debootstrap", "/sbin/debootstrap", "/usr/bin/debootstrap"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| BuildError::Invalid("debootstrap is not installed; install it (apt-get install debootstrap) and run kiln base bootstrap again".into()))?;
    let dir = tempfile::Builder::new()
        .prefix("kiln-rootfs-")
        .tempdir_in(std::env::var("KILN_ROOTFS_DIR").unwrap_or_else(|_| "/var/tmp".into()))
        .map_err(|e| BuildError::io("creating the root file system folder", e))?;
    let root = dir.path().join("root");
    sink.emit(Event::new(
        Phase::Building,
        format!(
            "debootstrap --variant=minbase {} from {} (about 30 s)",
            spec.suite, spec.mirror
        ),
    ));
    let output = tokio::process::Command::new(debootstrap)
        .arg("--variant=minbase")
        .arg(&spec.suite)
        .arg(&root)
        .arg(&spec.mirror)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| BuildError::io("running debootstrap", e))?;
    if !output.status.success() {
        let log = String::from_utf8_lossy(&output.stdout);
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(BuildError::BuildFailed {
            message: format!(
                "debootstrap exited with {} (it needs root and the Debian mirror)",
                output.status
            ),
            tail: format!("\n  {}", tail.join("\n  ")),
        });
    }
    let sources = format!(
        "deb {m} {s} main\ndeb {m} {s}-updates main\ndeb http://deb.debian.org/debian-security {s}-security main\n",
        m = spec.mirror,
        s = spec.suite
    );
    tokio::fs::write(root.join("etc/apt/sources.list"), sources)
        .await
        .map_err(|e| BuildError::io("writing sources.list", e))?;
    sink.emit(Event::new(
        Phase::Building,
        format!("Importing the root file system as {}", spec.image),
    ));
    // tar keeps owners, modes, links and device nodes exactly; its output is the import's body.
    let mut tar = tokio::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| BuildError::io("running tar", e))?;
    let stdout = tar
        .stdout
        .take()
        .ok_or_else(|| BuildError::Engine("tar gave no output stream".into()))?;
    let body = tokio_util::io::ReaderStream::with_capacity(stdout, 256 * 1024);
    let imported = engine.import_root(repo, tag, body).await;
    let status = tar
        .wait()
        .await
        .map_err(|e| BuildError::io("running tar", e))?;
    imported?;
    if !status.success() {
        return Err(BuildError::Engine(format!(
            "tar of the root file system exited with {status}"
        )));
    }
    sink.emit(Event::new(Phase::Built, format!("{} is ready", spec.image)));
    Ok(true)
}
