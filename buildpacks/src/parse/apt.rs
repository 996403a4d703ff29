//! `apt.txt`: one Debian package per line, `#` comments allowed.
//!
//! Each line must be a Debian package name, optionally with `:arch` and `=version`. Anything else
//! (shell metacharacters above all) is rejected with its line number: package names are passed to
//! apt-get as separate, quoted arguments, never through a shell.

use crate::error::PlanError;
use crate::parse::content_lines;

pub fn parse(path: &str, text: &str) -> Result<Vec<String>, PlanError> {
    let mut packages = Vec::new();
    for (line, content) in content_lines(text) {
        // A trailing comment is allowed after the name.
        let entry = content.split('#').next().unwrap_or("").trim();
        if !is_package(entry) {
            return Err(PlanError::InvalidLine {
                path: path.to_string(),
                line,
                message: format!(
                    "{entry:?} is not a Debian package name (lowercase letters, digits and + - ., \
                     optionally :arch and =version); write one package per line"
                ),
            });
        }
        if !packages.iter().any(|p| p == entry) {
            packages.push(entry.to_string());
        }
    }
    Ok(packages)
}

/// `name[:arch][=version]` with Debian's character rules.
pub fn is_package(entry: &str) -> bool {
    let (name_arch, version) = match entry.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (entry, None),
    };
    let (name, arch) = match name_arch.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (name_arch, None),
    };
    let name_ok = name.len() >= 2
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    let arch_ok = arch.is_none_or(|a| {
        !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    let version_ok = version.is_none_or(|v| {
        !v.is_empty()
            && v.len() <= 128
            && v.as_bytes()[0].is_ascii_digit()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.~:".contains(&b))
    });
    name_ok && arch_ok && version_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let text = "# tools\ncurl\nlibpq-dev  # for psycopg\n\ng++\npython3.11=3.11.2-6\nlibc6:amd64\ncurl\n";
        assert_eq!(
            parse("apt.txt", text).unwrap(),
            [
                "curl",
                "libpq-dev",
                "g++",
                "python3.11=3.11.2-6",
                "libc6:amd64"
            ]
        );
    }

    #[test]
    fn rejects_shell() {
        for bad in [
            "curl; rm -rf /",
            "$(whoami)",
            "`id`",
            "a|b",
            "Curl",
            "-y",
            "x",
            "foo bar",
            "pkg=",
            "pkg=;ls",
        ] {
            let err = parse("apt.txt", &format!("ok\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("apt.txt:2:"), "{bad:?}: {err}");
        }
    }
}
