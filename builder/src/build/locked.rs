//! `--locked IMAGE`: what an earlier image held, read from its contents record, is installed again
//! instead of resolving the repository's files (the plan's [`Locked`] packages: Python, the
//! versions of apt.txt's packages, R's CRAN snapshot; the conda lock goes through [`super::conda_stage`]). After the
//! build, the new image's record is compared with the earlier one and every package that differs
//! is reported: that is what `--locked` could not honour (R packages from an undated snapshot, a
//! base image that moved, a package installed after the copy).

use kiln_buildpacks::options::Locked;
use kiln_sbom::Contents;
use kiln_sbom::lock::DEFAULT_PYTHON_ENV;

use super::BuildRequest;
use crate::contents::{self, Lookup, Place};
use crate::engine::Engine;
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};

/// An earlier image's packages, as the plan gets them, and its record.
pub(super) struct Locking {
    pub image: String,
    pub record: Contents,
    pub options: Locked,
}

/// The most differences listed per package manager; the rest are counted.
const LISTED: usize = 12;

/// Read the record of the image `--locked` names (from the engine, else its registry).
pub(super) async fn read(
    engine: &Engine,
    request: &BuildRequest,
    sink: &mut dyn EventSink,
) -> Result<Option<Locking>, BuildError> {
    let Some(image) = &request.locked else {
        return Ok(None);
    };
    let found = contents::find(Some(engine), None, image, Lookup::Auto)
        .await
        .map_err(|e| BuildError::Invalid(format!("--locked {image}: {e}")))?;
    if found.place == Place::ListedNow {
        sink.emit(Event::new(
            Phase::Building,
            format!("Warning: --locked {image}: it has no contents record (built before kiln recorded them, or not by kiln); its packages were listed now, without hashes"),
        ));
    }
    let record = found.contents;
    let python = kiln_sbom::requirements_txt(&record, DEFAULT_PYTHON_ENV).ok();
    let native = record.architecture.clone().unwrap_or_default();
    let deb = record
        .deb
        .iter()
        .filter(|p| p.architecture == native || p.architecture == "all")
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    let mut held = Vec::new();
    if let Some(text) = &python {
        let pins = kiln_sbom::lock::pin_count(text);
        let hashes = if kiln_sbom::lock::has_hashes(text) {
            "with the hashes of their files"
        } else {
            "without hashes (the record has none for some)"
        };
        held.push(format!("{pins} Python packages {hashes}"));
    }
    if !record.conda.is_empty() {
        held.push("its conda lock".to_string());
    }
    let r_snapshot = record.r.as_ref().and_then(|r| r.snapshot_date.clone());
    if let Some(date) = &r_snapshot {
        held.push(format!("R packages from its CRAN snapshot of {date}"));
    }
    held.push("its versions of apt.txt's packages".to_string());
    sink.emit(Event::new(
        Phase::Building,
        format!(
            "--locked {image}: installing what it held (record {}): {}",
            record.digest(),
            held.join(", ")
        ),
    ));
    Ok(Some(Locking {
        image: image.clone(),
        options: Locked {
            from: image.clone(),
            python,
            deb,
            r_snapshot,
        },
        record,
    }))
}

/// Compare what the new image holds with the locked image and say what differs.
pub(super) fn report(locking: &Locking, new: &Contents, sink: &mut dyn EventSink) {
    let diff = kiln_sbom::diff(&locking.record, new);
    if diff.packages.is_empty() {
        sink.emit(Event::new(
            Phase::Building,
            format!(
                "--locked {}: the new image holds exactly its packages",
                locking.image
            ),
        ));
        return;
    }
    let mut parts = Vec::new();
    for m in &diff.packages {
        let mut changes: Vec<String> = m
            .changed
            .iter()
            .map(|c| format!("{} {} -> {}", c.name, c.old, c.new))
            .chain(m.added.iter().map(|p| format!("+{} {}", p.name, p.version)))
            .chain(
                m.removed
                    .iter()
                    .map(|p| format!("-{} {}", p.name, p.version)),
            )
            .collect();
        let more = changes.len().saturating_sub(LISTED);
        changes.truncate(LISTED);
        if more > 0 {
            changes.push(format!("and {more} more"));
        }
        let place = m
            .environment
            .as_deref()
            .map(|e| format!(" {e}"))
            .unwrap_or_default();
        parts.push(format!(
            "{}{place}: {}",
            m.manager.as_str(),
            changes.join(", ")
        ));
    }
    sink.emit(Event::new(
        Phase::Building,
        format!(
            "Warning: --locked {}: not honoured for every package; the new image differs in {}",
            locking.image,
            parts.join("; ")
        ),
    ));
}
