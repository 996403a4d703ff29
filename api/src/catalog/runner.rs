//! One check of a catalogue entry, top to bottom, and an admin's operations on its versions.
//!
//! A check: take the entry's lease (one replica at a time; versions a vanished holder left
//! `building` become `failed`), observe what the ref names and which base image builds start
//! from, decide ([`kiln_catalog::decide`]); to build, mind the community's quotas, reserve the
//! next version (its tag is never reused), build through the service's builds (the community
//! counted as the client), ask the registry for the digest, run the smoke test, promote (`auto`)
//! or hold it for an admin (`manual`), and retire promoted versions beyond `keep`.

use std::sync::Arc;
use std::time::Duration;

use kiln_builder::{Phase, PushSettings, Source};
use kiln_catalog::{Check, Community, Decision, Entry, Observed, Promotion, State, Version};
use serde::Serialize;

use super::relock::LockCheck;
use crate::admission::ClientKey;
use crate::builds::Target;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// A community at its quota.
    #[error("{0}")]
    Quota(String),
    #[error("{0}")]
    Internal(String),
}

impl CatalogError {
    pub fn status_code(&self) -> u16 {
        match self {
            CatalogError::NotFound(_) => 404,
            CatalogError::Invalid(_) => 409,
            CatalogError::Quota(_) => 429,
            CatalogError::Internal(_) => 500,
        }
    }
}

/// What a check did.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub community: String,
    pub entry: String,
    /// `nothing`, `built`, `failed` (the check or the build), `busy` (another holder checks it).
    pub outcome: &'static str,
    pub message: String,
    /// The version built.
    pub version: Option<Version>,
}

/// How long a lease lasts unless renewed: a check renews it every [`RENEW`] while it runs, so a
/// replica that dies (or restarts mid-build) frees the entry within a minute.
const LEASE_SECONDS: i64 = 60;
const RENEW: Duration = Duration::from_secs(20);

/// How long a smoke test may run.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(300);

/// Check an entry; `rebuild` builds even when nothing changed (an admin asked).
pub async fn check(
    state: &Arc<AppState>,
    community: &Community,
    entry: &Entry,
    rebuild: bool,
) -> Result<CheckReport, CatalogError> {
    let catalogs = &state.catalogs;
    let (c, e, holder) = (
        community.id.clone(),
        entry.slug.clone(),
        catalogs.holder.clone(),
    );
    let now = catalogs.now();
    let claimed = catalogs
        .with_store(move |s| s.claim(&c, &e, &holder, now, LEASE_SECONDS))
        .await?;
    let report = |outcome, message: String, version| CheckReport {
        community: community.id.clone(),
        entry: entry.slug.clone(),
        outcome,
        message,
        version,
    };
    if !claimed {
        return Ok(report(
            "busy",
            "another check of this entry is running (here or on another replica); it was not checked again".into(),
            None,
        ));
    }
    let renewing = {
        let (state, c, e) = (state.clone(), community.id.clone(), entry.slug.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW).await;
                let catalogs = &state.catalogs;
                let (c, e, holder, now) = (
                    c.clone(),
                    e.clone(),
                    catalogs.holder.clone(),
                    catalogs.now(),
                );
                match catalogs
                    .with_store(move |s| s.claim(&c, &e, &holder, now, LEASE_SECONDS))
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!("a catalogue lease was taken over while held"),
                    Err(e) => tracing::warn!("cannot renew a catalogue lease: {e}"),
                }
            }
        })
    };
    let result = check_holding(state, community, entry, rebuild).await;
    renewing.abort();
    let (c, e, holder) = (
        community.id.clone(),
        entry.slug.clone(),
        catalogs.holder.clone(),
    );
    if let Err(e) = catalogs
        .with_store(move |s| s.release(&c, &e, &holder))
        .await
    {
        tracing::warn!("cannot give back a catalogue lease: {e}");
    }
    // Recorded for the catalogue page (and the scheduler): an error (a source gone, a quota) is
    // shown beside the last good version, which stays offered.
    let (recorded, answer) = match result {
        Ok((outcome, message, version)) => (
            (
                message.clone(),
                (outcome == "failed").then(|| message.clone()),
            ),
            Ok(report(outcome, message, version)),
        ),
        Err(e) => ((e.to_string(), Some(e.to_string())), Err(e)),
    };
    let check = Check {
        checked: catalogs.now(),
        result: recorded.0,
        error: recorded.1,
    };
    let (c, e) = (community.id.clone(), entry.slug.clone());
    catalogs
        .with_store(move |s| s.record_check(&c, &e, &check))
        .await?;
    answer
}

type Outcome = (&'static str, String, Option<Version>);

/// Entries of one community checked at once by [`check_all`].
const CHECKS_AT_ONCE: usize = 8;

/// Check every entry of a community, a few at a time; the reports in the entries' order.
pub async fn check_all(
    state: &Arc<AppState>,
    community: &Community,
    rebuild: bool,
) -> Vec<Result<CheckReport, CatalogError>> {
    use futures_util::StreamExt;
    let checks = community.entries.clone().into_iter().map(|entry| {
        let (state, community) = (state.clone(), community.clone());
        async move { check(&state, &community, &entry, rebuild).await }
    });
    futures_util::stream::iter(checks)
        .buffered(CHECKS_AT_ONCE)
        .collect()
        .await
}

async fn check_holding(
    state: &Arc<AppState>,
    community: &Community,
    entry: &Entry,
    rebuild: bool,
) -> Result<Outcome, CatalogError> {
    let catalogs = &state.catalogs;
    let (c, e, now) = (community.id.clone(), entry.slug.clone(), catalogs.now());
    let abandoned = catalogs
        .with_store(move |s| s.abandon_building(&c, &e, now))
        .await?;
    if !abandoned.is_empty() {
        tracing::warn!(community = %community.id, entry = %entry.slug, "versions {abandoned:?} were left building; marked failed");
    }
    let spec = crate::spec::for_entry(&entry.source, &entry.reference)
        .map_err(|e| CatalogError::Invalid(format!("entry {}: {e}", entry.slug)))?;
    let observed = match observe(state, &spec, &entry.reference).await {
        Ok(observed) => observed,
        Err(message) => {
            return Ok((
                "failed",
                format!(
                    "cannot check {} at {}: {message}; the last good version stays offered",
                    kiln_builder::source::redact(&entry.source),
                    entry.reference
                ),
                None,
            ));
        }
    };
    let versions = versions(state, &community.id, &entry.slug).await?;
    let newest = versions
        .iter()
        .rev()
        .find(|v| !matches!(v.state, State::Building | State::Failed));
    let mut observed = observed;
    match in_registry(state, community, newest).await {
        Ok(present) => observed.newest_in_registry = present,
        Err(message) => {
            return Ok((
                "failed",
                format!("cannot check: {message}; the last good version stays offered"),
                None,
            ));
        }
    }
    // A version built with a refresh keeps it in later builds, and so its packages.
    let mut refresh = newest.and_then(|v| v.refresh.clone());
    let reason = match (rebuild, kiln_catalog::decide(entry, newest, &observed)) {
        (true, _) => "an admin asked for a rebuild".to_string(),
        (false, Decision::Build { reason }) => reason,
        (false, Decision::Nothing { reason }) => match newest {
            Some(newest) if entry.rebuild.lock_change => {
                match super::relock::lock_check(state, community, entry, &spec, newest).await {
                    Ok(LockCheck::Moved { reason, refresh: r }) => {
                        refresh = r;
                        reason
                    }
                    Ok(LockCheck::Same(note)) => {
                        return Ok(("nothing", format!("{reason}; {note}"), None));
                    }
                    Err(message) => {
                        return Ok((
                            "failed",
                            format!(
                                "cannot re-solve the environment (rebuild.lock_change): {message}; the last good version stays offered"
                            ),
                            None,
                        ));
                    }
                }
            }
            _ => return Ok(("nothing", reason, None)),
        },
    };
    within_quota(state, community).await?;
    let version =
        build_version(state, community, entry, &spec, &observed, &reason, refresh).await?;
    let message = match version.state {
        State::Promoted => format!("built and promoted version {} ({reason})", version.number),
        State::Candidate => format!(
            "built version {} ({reason}); it waits for an admin to promote it",
            version.number
        ),
        State::Broken => format!(
            "built version {} ({reason}), but its smoke test failed: not offered",
            version.number
        ),
        _ => format!(
            "version {} failed to build ({reason}): {}",
            version.number,
            version.reason.as_deref().unwrap_or("no reason given")
        ),
    };
    let outcome = if version.state == State::Failed {
        "failed"
    } else {
        "built"
    };
    Ok((outcome, message, Some(version)))
}

/// What the entry's ref names now, and the base image's id.
async fn observe(
    state: &AppState,
    spec: &crate::spec::Spec,
    reference: &str,
) -> Result<Observed, String> {
    let fetch = state.builds.fetch().clone();
    let commit = match &spec.source {
        Source::Git(git) => {
            spec.check_reachable(&fetch.policy)
                .await
                .map_err(|e| e.to_string())?;
            let (git, reference) = (git.clone(), reference.to_string());
            tokio::task::spawn_blocking(move || {
                use kiln_builder::git::GitBackend;
                let reference = (reference != "HEAD").then_some(reference);
                kiln_builder::git::LibGit.resolve(&git, reference.as_deref(), &fetch)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
            .commit
        }
        Source::Record(record) => {
            let mut quiet = |_: kiln_builder::Event| {};
            kiln_builder::records::resolve(record, &fetch, &fetch.records, &mut quiet)
                .await
                .map_err(|e| e.to_string())?
                .version
        }
        Source::Local(_) => return Err("local folders cannot be catalogue sources".into()),
    };
    let base = state
        .engine
        .image_id(state.builds.base_image())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Observed {
        commit,
        base,
        newest_in_registry: None,
    })
}

/// Whether the registry still has a version's image at its digest; `None` for a version without
/// one (images kept in the engine) or deleted by retention.
async fn in_registry(
    state: &AppState,
    community: &Community,
    version: Option<&Version>,
) -> Result<Option<bool>, String> {
    let Some(version) = version.filter(|v| v.deleted.is_none()) else {
        return Ok(None);
    };
    let (Some(digest), Some(push)) = (
        &version.digest,
        community_push(state, community).map_err(|e| e.to_string())?,
    ) else {
        return Ok(None);
    };
    let now = push
        .registry
        .manifest_digest(&version.image)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(now.as_ref() == Some(digest)))
}

/// A community's concurrent builds and builds per day.
async fn within_quota(state: &AppState, community: &Community) -> Result<(), CatalogError> {
    let catalogs = &state.catalogs;
    let quotas = &community.quotas;
    let c = community.id.clone();
    let running = catalogs.with_store(move |s| s.building(&c)).await?;
    if let Some(max) = quotas.concurrent_builds
        && running as usize >= max
    {
        return Err(CatalogError::Quota(format!(
            "community {} has {running} catalogue builds running, its quota (quotas.concurrent_builds = {max}); try again when one has finished",
            community.id
        )));
    }
    if let Some(max) = quotas.builds_per_day {
        let now = catalogs.now();
        let today = now - now.rem_euclid(86_400);
        let c = community.id.clone();
        let started = catalogs
            .with_store(move |s| s.builds_since(&c, today))
            .await?;
        if started >= max {
            return Err(CatalogError::Quota(format!(
                "community {} started {started} catalogue builds today (UTC), its quota (quotas.builds_per_day = {max}); the next check after midnight UTC can build",
                community.id
            )));
        }
    }
    Ok(())
}

/// Where a community's images go: its prefix's registry, or the engine. Environment images go
/// under the shared prefix (`KILN_CATALOG_ENVIRONMENT_PREFIX`, else `KILN_IMAGE_PREFIX`) when it is
/// in the same registry, so that communities with the same environment build it once.
pub fn community_push(
    state: &AppState,
    community: &Community,
) -> Result<Option<PushSettings>, CatalogError> {
    let Some(prefix) = community.prefix(state.config.image_prefix.as_deref()) else {
        return Ok(None);
    };
    // One client per prefix: a registry client is costly to make (TLS roots, tokens).
    if let Some(push) = state.catalogs.push_for(&prefix) {
        return Ok(Some(push));
    }
    let invalid = |e: kiln_builder::BuildError| {
        CatalogError::Invalid(format!(
            "community {}: registry prefix {prefix:?}: {e}",
            community.id
        ))
    };
    let push = PushSettings::new(&prefix, None, true).map_err(invalid)?;
    let shared = state
        .config
        .catalog_environment_prefix
        .as_deref()
        .or(state.config.image_prefix.as_deref());
    let push = match shared {
        Some(shared) => match push.clone().with_environment_prefix(shared) {
            Ok(sharing) => sharing,
            Err(e) => {
                tracing::debug!(community = %community.id, "environments not shared: {e}");
                push
            }
        },
        None => push,
    };
    state.catalogs.keep_push(&prefix, &push);
    Ok(Some(push))
}

/// The image of a version: `<prefix><entry>:v<n>-<commit>`, or `kiln/<community>-<entry>:...`
/// when images stay in the engine.
fn image_name(
    push: Option<&PushSettings>,
    community: &Community,
    entry: &Entry,
    tag: &str,
) -> String {
    match push {
        Some(push) => format!("{}{}:{tag}", push.prefix.to_lowercase(), entry.slug),
        None => format!("kiln/{}-{}:{tag}", community.id, entry.slug),
    }
}

async fn build_version(
    state: &Arc<AppState>,
    community: &Community,
    entry: &Entry,
    spec: &crate::spec::Spec,
    observed: &Observed,
    reason: &str,
    refresh: Option<String>,
) -> Result<Version, CatalogError> {
    let catalogs = &state.catalogs;
    let push = community_push(state, community)?;
    let (commit, base, started) = (
        observed.commit.clone(),
        observed.base.clone(),
        catalogs.now(),
    );
    let names = (push.clone(), community.clone(), entry.clone());
    let (c, e, reason) = (community.id.clone(), entry.slug.clone(), reason.to_string());
    let mut version = catalogs
        .with_store(move |s| {
            s.reserve(&c, &e, |number| {
                let tag = kiln_catalog::version::tag(number, &commit);
                Version {
                    number,
                    image: image_name(names.0.as_ref(), &names.1, &names.2, &tag),
                    commit,
                    digest: None,
                    base,
                    contents_digest: None,
                    sbom_digest: None,
                    started,
                    finished: None,
                    state: State::Building,
                    reason: Some(reason),
                    smoke_output: None,
                    build_id: None,
                    deleted: None,
                    built: None,
                    refresh,
                }
            })
        })
        .await?;
    let outcome = run_build(state, community, entry, spec, &mut version, push.as_ref()).await;
    version.finished = Some(catalogs.now());
    match outcome {
        Err(message) => {
            version.state = State::Failed;
            version.reason = Some(message);
        }
        Ok(()) => smoke_test(state, entry, &mut version, push.as_ref()).await,
    }
    save(state, community, entry, &version).await?;
    if version.state == State::Promoted {
        apply_keep(state, community, entry).await?;
    }
    Ok(version)
}

/// Build the version's image through the service's builds and wait for it; the version gets its
/// build id, digests and registry digest.
async fn run_build(
    state: &Arc<AppState>,
    community: &Community,
    entry: &Entry,
    spec: &crate::spec::Spec,
    version: &mut Version,
    push: Option<&PushSettings>,
) -> Result<(), String> {
    // Exactly the commit observed (a record's version is resolved again and must be the same).
    let mut spec = spec.clone();
    if matches!(spec.source, Source::Git(_)) {
        spec.reference = version.commit.clone();
    }
    let target = Target {
        image_name: Some(version.image.clone()),
        push: push.cloned(),
        refresh: version.refresh.clone(),
    };
    let shared = state
        .builds
        .build_to(
            &spec,
            ClientKey::Community(community.id.clone()),
            Some(community.quotas.concurrent_builds.unwrap_or(0)),
            Some(target),
        )
        .await
        .map_err(|e| e.to_string())?;
    version.build_id = Some(shared.id.clone());
    save_quietly(state, community, entry, version).await;
    let last = finished(&shared).await?;
    version.built = Some(last.message.trim_end().to_string());
    version.contents_digest = last.contents_digest.clone();
    version.sbom_digest = last.sbom_digest.clone();
    if let Some(push) = push {
        version.digest = push
            .registry
            .manifest_digest(&version.image)
            .await
            .map_err(|e| format!("the registry does not answer for {}: {e}", version.image))?;
        if version.digest.is_none() {
            return Err(format!(
                "the build said it pushed {}, but the registry does not have it",
                version.image
            ));
        }
    }
    Ok(())
}

/// Wait for a build to end: its `built` event, or what it failed with.
pub(super) async fn finished(
    shared: &crate::builds::SharedBuild,
) -> Result<kiln_builder::Event, String> {
    let mut from = 0;
    let mut last = None;
    while let Some(events) = shared.next(from).await {
        from += events.len();
        last = events.into_iter().last().or(last);
    }
    let Some(last) = last else {
        return Err("the build ended without a word".into());
    };
    if last.phase != Phase::Built {
        return Err(last.message.trim_end().to_string());
    }
    Ok(last)
}

/// Run the entry's smoke test in the version's image; the version becomes promoted (auto),
/// a candidate (manual) or broken.
async fn smoke_test(
    state: &AppState,
    entry: &Entry,
    version: &mut Version,
    push: Option<&PushSettings>,
) {
    let credentials = push.and_then(PushSettings::docker_credentials);
    let result = state
        .engine
        .run_command(
            &version.image,
            &entry.smoke,
            SMOKE_TIMEOUT,
            &crate::launch::session_resources(&state.config),
            credentials,
        )
        .await;
    let command = entry.smoke.join(" ");
    match result {
        Ok(output) => {
            let text = tail(&[output.stdout, output.stderr].concat(), 4000);
            version.smoke_output = Some(text.clone());
            if output.status == 0 {
                version.state = match entry.promotion {
                    Promotion::Auto => State::Promoted,
                    Promotion::Manual => State::Candidate,
                };
            } else {
                version.state = State::Broken;
                version.reason = Some(format!(
                    "the smoke test `{command}` exited {}: {}",
                    output.status,
                    text.trim_end()
                ));
            }
        }
        Err(e) => {
            version.state = State::Broken;
            version.reason = Some(format!("the smoke test `{command}` could not run: {e}"));
        }
    }
}

/// The last `max` bytes of a command's output, as text.
fn tail(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

async fn save(
    state: &AppState,
    community: &Community,
    entry: &Entry,
    version: &Version,
) -> Result<(), CatalogError> {
    let (c, e, v) = (community.id.clone(), entry.slug.clone(), version.clone());
    state
        .catalogs
        .with_store(move |s| s.update(&c, &e, &v))
        .await
}

/// Store a version, only logging a failure (the build goes on; the final save reports).
async fn save_quietly(state: &AppState, community: &Community, entry: &Entry, version: &Version) {
    if let Err(e) = save(state, community, entry, version).await {
        tracing::warn!(community = %community.id, entry = %entry.slug, "cannot store version {}: {e}", version.number);
    }
}

/// An entry's versions, oldest first.
pub async fn versions(
    state: &AppState,
    community: &str,
    entry: &str,
) -> Result<Vec<Version>, CatalogError> {
    let (c, e) = (community.to_string(), entry.to_string());
    state.catalogs.with_store(move |s| s.versions(&c, &e)).await
}

/// Promoted versions beyond the entry's `keep` are retired, unless pinned.
async fn apply_keep(
    state: &AppState,
    community: &Community,
    entry: &Entry,
) -> Result<(), CatalogError> {
    let mut versions = versions(state, &community.id, &entry.slug).await?;
    let (c, e) = (community.id.clone(), entry.slug.clone());
    let pins = state.catalogs.with_store(move |s| s.pins(&c, &e)).await?;
    versions.sort_by_key(|v| std::cmp::Reverse(v.number));
    let mut kept = 0;
    for mut v in versions {
        if !v.state.offered() {
            continue;
        }
        kept += 1;
        let pinned = pins.contains_key(&v.number) || entry.pin_label(v.number).is_some();
        if kept > entry.keep && !pinned {
            v.state = State::Retired;
            v.reason = Some(format!(
                "retired: {} newer versions are offered (keep = {})",
                entry.keep, entry.keep
            ));
            save(state, community, entry, &v).await?;
        }
    }
    Ok(())
}

/// An admin's operation on a version.
#[derive(Clone, Debug)]
pub enum Operation {
    Promote,
    Deprecate { reason: String },
    Retire { reason: String },
    Pin { label: String },
    Unpin,
}

/// Carry out an operation; the version as it is afterwards.
pub async fn operate(
    state: &AppState,
    community: &Community,
    entry: &Entry,
    number: u32,
    operation: Operation,
) -> Result<Version, CatalogError> {
    let mut version = versions(state, &community.id, &entry.slug)
        .await?
        .into_iter()
        .find(|v| v.number == number)
        .ok_or_else(|| {
            CatalogError::NotFound(format!("entry {} has no version {number}", entry.slug))
        })?;
    let refuse = |what: &str| {
        Err(CatalogError::Invalid(format!(
            "version {number} is {}: it cannot be {what}{}",
            version.state.as_str(),
            version
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )))
    };
    let (c, e) = (community.id.clone(), entry.slug.clone());
    match operation {
        Operation::Promote => {
            if !matches!(
                version.state,
                State::Candidate | State::Deprecated | State::Retired
            ) {
                return refuse("promoted");
            }
            version.state = State::Promoted;
            version.reason = Some("promoted by an admin".into());
        }
        Operation::Deprecate { reason } => {
            if !version.state.offered() {
                return refuse("deprecated");
            }
            version.state = State::Deprecated;
            version.reason = Some(reason);
        }
        Operation::Retire { reason } => {
            if matches!(version.state, State::Building | State::Retired) {
                return refuse("retired");
            }
            version.state = State::Retired;
            version.reason = Some(reason);
        }
        Operation::Pin { label } => {
            if matches!(
                version.state,
                State::Building | State::Failed | State::Broken | State::Retired
            ) {
                return refuse("pinned");
            }
            let n = version.number;
            state
                .catalogs
                .with_store(move |s| s.pin(&c, &e, n, Some(&label)))
                .await?;
            return Ok(version);
        }
        Operation::Unpin => {
            let n = version.number;
            state
                .catalogs
                .with_store(move |s| s.pin(&c, &e, n, None))
                .await?;
            return Ok(version);
        }
    }
    save(state, community, entry, &version).await?;
    if version.state == State::Promoted {
        apply_keep(state, community, entry).await?;
    }
    Ok(version)
}

/// What retention did, or would do.
#[derive(Clone, Debug, Serialize)]
pub struct RetentionReport {
    pub community: String,
    /// Nothing was deleted: the report says what would be.
    pub dry_run: bool,
    /// Deleted (or, in a dry run, to be deleted).
    pub images: Vec<kiln_catalog::retention::Doomed>,
    /// The registry refused a deletion: what it said. Nothing after it was deleted.
    pub refused: Option<String>,
}

/// Delete from the registry the community's images that no version keeps: a dry run unless
/// `apply`. The first refusal stops it; what was deleted before it is recorded.
pub async fn retention(
    state: &AppState,
    community: &Community,
    apply: bool,
) -> Result<RetentionReport, CatalogError> {
    let c = community.id.clone();
    let (versions, pins) = state.catalogs.with_store(move |s| s.community(&c)).await?;
    let doomed = kiln_catalog::retention::plan(community, &versions, &pins);
    let mut report = RetentionReport {
        community: community.id.clone(),
        dry_run: !apply,
        images: Vec::new(),
        refused: None,
    };
    if !apply {
        report.images = doomed;
        return Ok(report);
    }
    let Some(push) = community_push(state, community)? else {
        return Err(CatalogError::Invalid(format!(
            "community {} keeps its images in the engine (no registry prefix): there is no registry to delete from",
            community.id
        )));
    };
    for d in doomed {
        if let Err(e) = push
            .registry
            .delete_with_referrers(&d.image, &d.digest)
            .await
        {
            report.refused = Some(e.to_string());
            break;
        }
        let Some(entry) = community.entry(&d.entry) else {
            continue;
        };
        if let Some(mut v) = versions
            .get(&d.entry)
            .and_then(|list| list.iter().find(|v| v.number == d.version))
            .cloned()
        {
            v.deleted = Some(state.catalogs.now());
            save(state, community, entry, &v).await?;
        }
        report.images.push(d);
    }
    Ok(report)
}

/// A community's retention on its schedule: deleted for real (an admin sees what would go with a
/// dry run at any time), one replica at a time (it holds the community's retention lease), the
/// run recorded like an entry's check (the catalogue shows it as `retention.last_run`).
pub async fn scheduled_retention(state: &AppState, community: &Community) {
    let catalogs = &state.catalogs;
    let key = kiln_catalog::community::RETENTION_KEY;
    let (c, holder, now) = (
        community.id.clone(),
        catalogs.holder.clone(),
        catalogs.now(),
    );
    match catalogs
        .with_store(move |s| s.claim(&c, key, &holder, now, LEASE_SECONDS))
        .await
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(community = %community.id, "cannot hold the retention lease: {e}");
            return;
        }
    }
    let (result, error) = match retention(state, community, true).await {
        Ok(report) => {
            let deleted = match report.images.len() {
                1 => "1 image".to_string(),
                n => format!("{n} images"),
            };
            match report.refused {
                Some(refused) => {
                    let message = format!(
                        "scheduled retention deleted {deleted}, then the registry refused: {refused}"
                    );
                    (message.clone(), Some(message))
                }
                None => (
                    format!("scheduled retention deleted {deleted} nobody keeps"),
                    None,
                ),
            }
        }
        Err(e) => {
            let message = format!("scheduled retention could not run: {e}");
            (message.clone(), Some(message))
        }
    };
    match &error {
        Some(error) => tracing::warn!(community = %community.id, "{error}"),
        None => tracing::info!(community = %community.id, "{result}"),
    }
    let check = Check {
        checked: catalogs.now(),
        result,
        error,
    };
    let (c, holder) = (community.id.clone(), catalogs.holder.clone());
    if let Err(e) = catalogs
        .with_store(move |s| {
            s.record_check(&c, key, &check)?;
            s.release(&c, key, &holder)
        })
        .await
    {
        tracing::warn!(community = %community.id, "cannot record the retention run: {e}");
    }
}
