//! Image names, compatible with BinderHub's scheme so existing tooling finds kiln's images:
//! `<prefix><escaped build slug>-<sha256(build slug)[:6]>:<commit>`, lowercase.
//!
//! The build slug is BinderHub's: `org-repo` for GitHub, the namespace for GitLab, the gist id, and
//! the repository URL for any other git source. Every character outside `[A-Za-z0-9]` is escaped as
//! `-` and its hex code (so `-` itself becomes `-2d`), the escaped slug is cut to fit, and the first six
//! hex digits of the slug's sha256 are appended so that cut names stay distinct.
//!
//! Environment images are named `<prefix>kiln-environment:<environment key hex>`: one repository holds
//! every environment, so a final image's layers come from there by cross-repository mount.

use sha2::{Digest, Sha256};

use crate::error::RegistryError;

/// The longest repository name kiln writes (registries commonly allow 255 characters).
const MAX_NAME: usize = 255;

/// The final image name for a build slug and a commit (or other tag).
pub fn image_name(prefix: &str, build_slug: &str, tag: &str) -> Result<String, RegistryError> {
    let hash = hex::encode(Sha256::digest(build_slug.as_bytes()));
    let limit = MAX_NAME.saturating_sub(prefix.len()).max(16);
    let mut escaped = escape(build_slug);
    escaped.truncate(limit - 7);
    let name = format!("{prefix}{escaped}-{}", &hash[..6])
        .to_lowercase()
        .replace('_', "-");
    let reference = format!("{name}:{tag}");
    validate(&reference)?;
    Ok(reference)
}

/// The environment image for an environment key (`sha256:<hex>`).
pub fn environment_image_name(prefix: &str, key: &str) -> Result<String, RegistryError> {
    let hex = key.strip_prefix("sha256:").unwrap_or(key);
    let reference = format!("{}kiln-environment:{hex}", prefix.to_lowercase());
    validate(&reference)?;
    Ok(reference)
}

/// BinderHub's escaping: characters outside `[A-Za-z0-9]` become `-` and their UTF-8 bytes in hex.
fn escape(slug: &str) -> String {
    let mut out = String::with_capacity(slug.len() * 2);
    for c in slug.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("-{byte:02x}"));
            }
        }
    }
    out
}

/// Check that a reference is a valid OCI reference (`registry/repository:tag`).
pub fn validate(reference: &str) -> Result<oci_client::Reference, RegistryError> {
    reference
        .parse::<oci_client::Reference>()
        .map_err(|e| RegistryError::InvalidReference {
            reference: reference.to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binderhub_compatible() {
        // BinderHub names binder-examples/octave this way (its build slug is `binder-examples-octave`).
        assert_eq!(
            image_name("", "binder-examples-octave", "1479e02").unwrap(),
            "binder-2dexamples-2doctave-03025a:1479e02"
        );
        let name = image_name(
            "127.0.0.1:5000/binder-",
            "https://git.example.org/Team/Repo.git",
            "abc",
        )
        .unwrap();
        assert!(
            name.starts_with(
                "127.0.0.1:5000/binder-https-3a-2f-2fgit-2eexample-2eorg-2fteam-2frepo-2egit-"
            ),
            "{name}"
        );
        assert!(name.ends_with(":abc"));
        let long = "x".repeat(400);
        let name = image_name("registry.example/p-", &long, "t").unwrap();
        assert!(
            name.len() <= "registry.example/".len() + MAX_NAME + 2,
            "{}",
            name.len()
        );
    }

    #[test]
    fn environments_and_invalid_references() {
        assert_eq!(
            environment_image_name("127.0.0.1:5000/kiln-", "sha256:abcd").unwrap(),
            "127.0.0.1:5000/kiln-kiln-environment:abcd"
        );
        assert!(validate("UPPER/Case:tag").is_err());
        assert!(validate("ok/name:tag with space").is_err());
    }
}
