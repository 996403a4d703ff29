//! Which commit a ref names, from a remote's advertised refs (no clone).

use super::Resolved;
use crate::error::BuildError;

/// Pick the commit a reference names from a remote's advertised refs.
pub fn resolve_in(
    url: &str,
    refs: &[(String, String)],
    reference: Option<&str>,
) -> Result<Resolved, BuildError> {
    let wanted = reference.unwrap_or("HEAD").trim();
    let find = |name: &str| {
        refs.iter()
            .find(|(n, _)| n == name)
            .map(|(_, oid)| oid.clone())
    };
    let found = |commit: String, name: &str| Resolved {
        commit,
        ref_name: Some(name.to_string()),
    };
    if wanted == "HEAD" {
        if let Some(oid) = find("HEAD") {
            return Ok(found(oid, "HEAD"));
        }
    } else {
        for name in [
            format!("refs/heads/{wanted}"),
            format!("refs/tags/{wanted}^{{}}"),
            format!("refs/tags/{wanted}"),
            wanted.to_string(),
        ] {
            if let Some(oid) = find(&name) {
                let name = name.trim_end_matches("^{}").to_string();
                return Ok(found(oid, &name));
            }
        }
    }
    let is_hex =
        wanted.len() >= 4 && wanted.len() <= 40 && wanted.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        let lower = wanted.to_ascii_lowercase();
        let mut tips: Vec<&(String, String)> = refs
            .iter()
            .filter(|(_, oid)| oid.starts_with(&lower))
            .collect();
        tips.dedup_by(|a, b| a.1 == b.1);
        match tips.as_slice() {
            [(name, oid)] => return Ok(found(oid.clone(), name.trim_end_matches("^{}"))),
            [] if lower.len() == 40 => {
                return Ok(Resolved {
                    commit: lower,
                    ref_name: None,
                });
            }
            [] => {}
            _ => {
                return Err(BuildError::UnknownRef {
                    url: url.to_string(),
                    reference: wanted.to_string(),
                    hint: "; it is ambiguous: give more characters of the SHA".into(),
                });
            }
        }
    }
    let mut names: Vec<&str> = refs
        .iter()
        .filter_map(|(n, _)| {
            n.strip_prefix("refs/heads/")
                .or_else(|| n.strip_prefix("refs/tags/"))
        })
        .filter(|n| !n.ends_with("^{}"))
        .collect();
    names.sort();
    names.truncate(10);
    let hint = if is_hex {
        "; a short SHA must be the tip of a branch or tag (give the full 40-character SHA for any other commit)".to_string()
    } else if names.is_empty() {
        "; the repository has no branches or tags".to_string()
    } else {
        format!("; it has: {}", names.join(", "))
    };
    Err(BuildError::UnknownRef {
        url: url.to_string(),
        reference: wanted.to_string(),
        hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs() -> Vec<(String, String)> {
        let r = |n: &str, o: &str| (n.to_string(), o.repeat(40 / o.len()));
        vec![
            r("HEAD", "a1"),
            r("refs/heads/main", "a1"),
            r("refs/heads/dev", "b2"),
            r("refs/tags/v1", "c3"),
            r("refs/tags/v1^{}", "d4"),
        ]
    }

    #[test]
    fn names_shas_and_errors() {
        assert_eq!(
            resolve_in("u", &refs(), None).unwrap().commit,
            "a1".repeat(20)
        );
        assert_eq!(
            resolve_in("u", &refs(), Some("dev")).unwrap().commit,
            "b2".repeat(20)
        );
        // An annotated tag resolves to the commit it points at.
        assert_eq!(
            resolve_in("u", &refs(), Some("v1")).unwrap().commit,
            "d4".repeat(20)
        );
        assert_eq!(
            resolve_in("u", &refs(), Some("b2b2b2b"))
                .unwrap()
                .ref_name
                .as_deref(),
            Some("refs/heads/dev")
        );
        let full = "e5".repeat(20);
        assert_eq!(
            resolve_in("u", &refs(), Some(&full)).unwrap(),
            Resolved {
                commit: full,
                ref_name: None
            }
        );
        let err = resolve_in("u", &refs(), Some("nope"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no branch, tag or commit \"nope\"; it has: dev, main, v1"),
            "{err}"
        );
        assert!(resolve_in("u", &refs(), Some("e5e5e5e")).is_err());
    }
}
