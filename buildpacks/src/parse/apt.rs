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

/// Names that Binder repositories put in `apt.txt` (Ubuntu's, or an older release's) which Debian
/// bookworm, kiln's default base, does not install, with what bookworm calls the same thing.
/// Checked against bookworm's archive (`apt-cache policy` in `kiln/base:bookworm`, 2026-12-03):
/// each left-hand name has no candidate there, each right-hand one has.
const NOT_IN_BOOKWORM: &[(&str, &str)] = &[
    ("chromium-browser", "chromium"),
    ("firefox", "firefox-esr"),
    ("libav-tools", "ffmpeg"),
    ("libjpeg62-dev", "libjpeg-dev"),
    ("libmysqlclient-dev", "default-libmysqlclient-dev"),
    ("libpng12-dev", "libpng-dev"),
    ("libqt4-dev", "qtbase5-dev"),
    ("libreadline6-dev", "libreadline-dev"),
    ("libssl1.0-dev", "libssl-dev"),
    ("openjdk-8-jdk", "openjdk-17-jdk"),
    ("openjdk-11-jdk", "openjdk-17-jdk"),
    (
        "python",
        "python3 (and python-is-python3 for the `python` command)",
    ),
    ("python-dev", "python3-dev"),
    ("python-pip", "python3-pip"),
];

/// For a plan on kiln's default base (Debian bookworm): the lines of `apt.txt` naming a package
/// bookworm does not have but knows by another name, refused before any engine work with that
/// name (apt-get would only say it cannot find the package).
pub fn check_bookworm_names(path: &str, text: &str) -> Result<(), PlanError> {
    let mut found = Vec::new();
    for (line, content) in content_lines(text) {
        let entry = content.split('#').next().unwrap_or("").trim();
        let name = entry.split(['=', ':']).next().unwrap_or(entry);
        if let Some((_, debian)) = NOT_IN_BOOKWORM.iter().find(|(n, _)| *n == name) {
            found.push((line, name.to_string(), *debian));
        }
    }
    let Some((line, name, debian)) = found.first() else {
        return Ok(());
    };
    let mut message = format!(
        "{name:?} is not a package of Debian bookworm, kiln's base image (it is Ubuntu's or an older release's name): use {debian}"
    );
    for (line, name, debian) in &found[1..] {
        message.push_str(&format!("; line {line}: {name:?}, use {debian}"));
    }
    Err(PlanError::InvalidLine {
        path: path.to_string(),
        line: *line,
        message,
    })
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
