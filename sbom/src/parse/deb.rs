//! The `deb` section: [`crate::collect::DPKG_QUERY`] lines,
//! `status⇥package⇥version⇥architecture⇥source package⇥source version`.

use crate::error::SbomError;
use crate::record::DebPackage;

/// Packages whose files are on disk: every status but `n` (not installed) and `c` (only its
/// configuration files remain). `first_line` numbers the lines in messages.
pub fn parse(text: &str, first_line: usize) -> Result<Vec<DebPackage>, SbomError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [status, name, version, architecture, source, source_version] = fields[..] else {
            return Err(SbomError::parse(
                "deb",
                Some(first_line + i),
                format!("expected 6 tab-separated fields, found {}", fields.len()),
            ));
        };
        let state = status.trim().chars().nth(1).unwrap_or('n');
        if matches!(state, 'n' | 'c') {
            continue;
        }
        if name.is_empty() || version.is_empty() {
            return Err(SbomError::parse(
                "deb",
                Some(first_line + i),
                "a package without a name or version",
            ));
        }
        let source = if source.is_empty() { name } else { source };
        out.push(DebPackage {
            name: name.to_string(),
            architecture: architecture.to_string(),
            version: version.to_string(),
            source: source.to_string(),
            source_version: (!source_version.is_empty() && source_version != version)
                .then(|| source_version.to_string()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // As `dpkg-query` prints it on Debian bookworm (dpkg 1.21.22).
    const SAMPLE: &str = "ii \tadduser\t3.134\tall\tadduser\t3.134\n\
ii \tbash\t5.2.15-2+b8\tamd64\tbash\t5.2.15-2\n\
ii \tbsdutils\t1:2.38.1-5+deb12u3\tamd64\tutil-linux\t2.38.1-5+deb12u3\n\
ii \tlibc6\t2.36-9+deb12u14\tamd64\tglibc\t2.36-9+deb12u14\n\
rc \tlibold1\t1.0-1\tamd64\told\t1.0-1\n\
ii \tlibc6\t2.36-9+deb12u14\ti386\tglibc\t2.36-9+deb12u14\n";

    #[test]
    fn dpkg_query_lines_give_installed_packages_with_their_source() {
        let p = parse(SAMPLE, 1).unwrap();
        assert_eq!(p.len(), 5, "the rc package is gone: {p:?}");
        assert_eq!(p[1].name, "bash");
        assert_eq!(p[1].source, "bash");
        assert_eq!(p[1].source_version.as_deref(), Some("5.2.15-2"));
        assert_eq!(p[2].version, "1:2.38.1-5+deb12u3");
        assert_eq!(p[2].source, "util-linux");
        assert_eq!(
            p[2].source_version.as_deref(),
            Some("2.38.1-5+deb12u3"),
            "the epoch differs"
        );
        assert_eq!(
            p[3].source_version, None,
            "the same version is not repeated"
        );
        assert_eq!(p[4].architecture, "i386");
    }

    #[test]
    fn malformed_dpkg_lines_name_their_line() {
        let e = parse("ii \tbash\t5.2\n", 10).unwrap_err().to_string();
        assert!(
            e.contains("line 10") && e.contains("6 tab-separated"),
            "{e}"
        );
    }
}
