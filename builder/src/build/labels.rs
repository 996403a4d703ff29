//! What an image is called and what its labels say.

use std::collections::BTreeMap;

use kiln_buildpacks::BuildPlan;

use super::BuildRequest;
use super::checkout::Checkout;
use super::push::PushSettings;
use crate::error::BuildError;
use crate::source::Source;

/// Label holding the commit an image was built from (with the source URL, it decides reuse).
pub const LABEL_COMMIT: &str = "org.opencontainers.image.revision";
pub const LABEL_SOURCE: &str = "org.opencontainers.image.source";
pub const LABEL_CREATED: &str = "org.opencontainers.image.created";
pub const LABEL_VERSION: &str = "io.kiln.version";
pub const LABEL_ENVIRONMENT: &str = "io.kiln.environment-key";
/// Label naming the file in the image that holds the conda lock.
pub const LABEL_CONDA_LOCK: &str = "io.kiln.conda-lock";
/// Label holding the sha256 of that lock.
pub const LABEL_CONDA_LOCK_DIGEST: &str = "io.kiln.conda-lock-digest";

/// Labels of the final image: source, commit, created time, kiln's version, the environment key,
/// repo2docker's labels, the plan's and the user's.
pub fn image_labels(
    request: &BuildRequest,
    plan: &BuildPlan,
    checkout: &Checkout,
) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = plan
        .layers()
        .map(|l| l.runtime.labels.clone())
        .unwrap_or_default();
    labels.insert(LABEL_SOURCE.into(), checkout.source_label.clone());
    labels.insert("repo2docker.repo".into(), checkout.source_label.clone());
    if let Some(commit) = &checkout.commit {
        labels.insert(LABEL_COMMIT.into(), commit.clone());
        labels.insert("repo2docker.ref".into(), commit.clone());
    }
    labels.insert(LABEL_CREATED.into(), rfc3339(checkout.time));
    labels.insert(LABEL_VERSION.into(), env!("CARGO_PKG_VERSION").into());
    if let Some(key) = &plan.environment_key {
        labels.insert(LABEL_ENVIRONMENT.into(), key.clone());
    }
    labels.extend(request.labels.clone());
    labels
}

/// The labels an environment image keeps: it is shared by every commit with its key, so it names
/// none of them.
pub fn environment_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    const KEPT: [&str; 4] = [
        LABEL_ENVIRONMENT,
        LABEL_VERSION,
        LABEL_CONDA_LOCK,
        LABEL_CONDA_LOCK_DIGEST,
    ];
    labels
        .iter()
        .filter(|(k, _)| KEPT.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The image name: `--image-name`; when pushing, BinderHub's scheme under the prefix; otherwise
/// `kiln/<slug>:<commit>`, or `kiln/<slug>:local-<content hash>`.
pub fn image_name(
    request: &BuildRequest,
    source: &Source,
    commit: Option<&str>,
    content: Option<&str>,
) -> Result<String, BuildError> {
    if let Some(name) = &request.image_name {
        kiln_registry::name::validate(name)?;
        return Ok(name.clone());
    }
    let tag = match (commit, content) {
        (Some(commit), _) => commit.to_string(),
        (None, Some(hash)) => format!("local-{hash}"),
        (None, None) => "latest".into(),
    };
    // A subfolder is another image of the same commit.
    let sub = request
        .subdir
        .as_deref()
        .map(|d| format!("-{}", crate::source::slugify(d)))
        .unwrap_or_default();
    match (&request.push, &request.image_slug) {
        (Some(push), slug) => Ok(kiln_registry::image_name(
            &push.prefix,
            &format!(
                "{}{sub}",
                slug.clone().unwrap_or_else(|| source.build_slug())
            ),
            &tag,
        )?),
        (None, Some(slug)) => Ok(format!("kiln/{}{sub}:{tag}", crate::source::slugify(slug))),
        (None, None) => Ok(format!("kiln/{}{sub}:{tag}", source.slug())),
    }
}

/// The environment image of a key under the prefix, when pushing.
///
/// `tools_in_image`: the plan's build tools (uv) are installed into the image, as the classic
/// builder does, rather than mounted from a stage of their own (BuildKit). Such an environment
/// image is named apart: the steps after it expect the tools where their builder puts them, so an
/// engine of the other kind must not build on it.
pub fn environment_image_name(
    push: Option<&PushSettings>,
    key: Option<&str>,
    tools_in_image: bool,
) -> Result<Option<String>, BuildError> {
    match (push, key) {
        (Some(push), Some(key)) => {
            let key = if tools_in_image {
                format!("{}-tools", key.strip_prefix("sha256:").unwrap_or(key))
            } else {
                key.to_string()
            };
            Ok(Some(kiln_registry::environment_image_name(
                push.environment_prefix(),
                &key,
            )?))
        }
        _ => Ok(None),
    }
}

/// The names of the system stage and of the conda image for an environment key: in the registry
/// under the prefix when pushing, else local names.
pub fn conda_image_names(
    push: Option<&PushSettings>,
    key: &str,
) -> Result<(String, String), BuildError> {
    let hex = key.strip_prefix("sha256:").unwrap_or(key);
    let (system, conda) = match push {
        Some(push) => {
            let prefix = push.environment_prefix().to_lowercase();
            (
                format!("{prefix}kiln-system:{hex}"),
                format!("{prefix}kiln-conda:{hex}"),
            )
        }
        None => (
            format!("kiln/conda-system:{hex}"),
            format!("kiln/conda-environment:{hex}"),
        ),
    };
    kiln_registry::name::validate(&system)?;
    kiln_registry::name::validate(&conda)?;
    Ok((system, conda))
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp (`1970-01-01T00:00:00Z`); times outside
/// the calendar's range are the epoch.
pub fn rfc3339(seconds: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests {
    /// An environment image made with uv inside it (the classic builder) is not the one a BuildKit
    /// engine makes with uv mounted: each kind of engine builds on its own kind only.
    #[test]
    fn an_environment_with_its_tools_inside_is_named_apart() {
        let push = super::PushSettings::new("127.0.0.1:5000/kiln-", None, true).unwrap();
        let name = |inside| {
            super::environment_image_name(Some(&push), Some("sha256:abcd"), inside)
                .unwrap()
                .unwrap()
        };
        assert_eq!(name(false), "127.0.0.1:5000/kiln-kiln-environment:abcd");
        assert_eq!(
            name(true),
            "127.0.0.1:5000/kiln-kiln-environment:abcd-tools"
        );
        assert_eq!(
            super::environment_image_name(None, Some("sha256:abcd"), true).unwrap(),
            None
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
