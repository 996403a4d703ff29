//! Names on the hub: users and servers kiln creates, their API paths, and the spawn request body.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::error::LaunchError;

/// What a name in a URL path keeps unescaped.
const NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A user or server name in a URL path.
pub fn escape(name: &str) -> String {
    utf8_percent_encode(name, NAME).to_string()
}

/// The API path of a user.
pub fn user_path(user: &str) -> String {
    format!("users/{}", escape(user))
}

/// The API path of a server: `users/<u>/server` for the default one, `users/<u>/servers/<s>` otherwise.
pub fn server_path(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("{}/server", user_path(user))
    } else {
        format!("{}/servers/{}", user_path(user), escape(server))
    }
}

/// A name for a temporary user or named server: the repository's name (lower case, at most `max`
/// characters) and random characters, as BinderHub names them.
pub fn launch_name(repo_url: &str, max: usize) -> Result<String, LaunchError> {
    // The path without the scheme and host (`git@host:org/repo` keeps what follows the colon).
    let path = match repo_url.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, p)| p),
        None => repo_url.rsplit_once(':').map_or(repo_url, |(_, p)| p),
    };
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    let tail: Vec<&str> = path.rsplit('/').filter(|p| !p.is_empty()).take(2).collect();
    let raw = tail.into_iter().rev().collect::<Vec<_>>().join("-");
    let mut slug = kiln_builder::source::slugify(&raw);
    slug.truncate(max);
    let slug = slug.trim_end_matches('-');
    let random = kiln_builder::random::hex(4)?;
    Ok(if slug.is_empty() {
        format!("kiln-{random}")
    } else {
        format!("{slug}-{random}")
    })
}

/// The body of a spawn request. JupyterHub 6 reads `{"user_options": {...}}`; earlier hubs take the
/// whole body as the user options (and 6 still does when neither `user_options` nor `display_name`
/// is present).
pub fn spawn_body(hub_major: Option<u64>, options: &Value) -> Value {
    match hub_major {
        Some(major) if major >= 6 => json!({"user_options": options}),
        _ => options.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_repository_and_random_characters() {
        let name = launch_name("https://github.com/Binder-Examples/Requirements.git", 32).unwrap();
        assert!(name.starts_with("binder-examples-requirements-"), "{name}");
        assert_eq!(name.len(), "binder-examples-requirements-".len() + 8);
        let long = launch_name(&format!("https://h/{}/{}", "a".repeat(40), "b"), 32).unwrap();
        assert!(long.len() <= 32 + 9, "{long}");
        assert!(launch_name("", 32).unwrap().starts_with("kiln-"));
        assert!(
            launch_name("git://127.0.0.1:9418/one", 32)
                .unwrap()
                .starts_with("one-")
        );
        assert!(
            launch_name("git@host.org:org/r.git", 32)
                .unwrap()
                .starts_with("org-r-")
        );
        assert_ne!(
            launch_name("https://h/a/b", 32).unwrap(),
            launch_name("https://h/a/b", 32).unwrap()
        );
    }

    #[test]
    fn spawn_bodies_for_each_hub() {
        let options = json!({"image": "i:1", "token": "t", "repo_url": "https://h/a/b"});
        assert_eq!(
            spawn_body(Some(6), &options),
            json!({"user_options": options})
        );
        assert_eq!(spawn_body(Some(5), &options), options);
        assert_eq!(spawn_body(None, &options), options);
    }

    #[test]
    fn server_paths() {
        assert_eq!(server_path("u-1", ""), "users/u-1/server");
        assert_eq!(server_path("a@b", "s"), "users/a%40b/servers/s");
    }
}
