//! `runtime.txt`: `python-X.Y`, `r-X.Y[.Z]-YYYY-MM-DD`, `r-YYYY-MM-DD`, and (beyond repo2docker) `r-X.Y`.

use crate::error::PlanError;

/// What `runtime.txt` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `python-X.Y` (`python-3` gives `None`: the default Python 3).
    Python { version: Option<String> },
    /// `r-…`: an optional version and an optional snapshot date.
    R {
        version: Option<String>,
        date: Option<String>,
    },
}

/// The oldest CRAN snapshot date that can still be served (MRAN's successor starts there).
pub const OLDEST_SNAPSHOT: &str = "2018-12-07";

pub fn parse(path: &str, text: &str) -> Result<Runtime, PlanError> {
    let value = text.trim();
    let bad = |why: &str| {
        PlanError::invalid(
            path,
            format!(
                "{value:?} is not a runtime kiln knows: {why}; write python-X.Y (python-3.12), \
                 r-X.Y-YYYY-MM-DD (r-4.4-2024-06-01), r-YYYY-MM-DD or r-X.Y"
            ),
        )
    };
    if value.is_empty() {
        return Err(bad("the file is empty"));
    }
    if value.lines().count() > 1 {
        return Err(bad("it must be a single line"));
    }
    let parts: Vec<&str> = value.split('-').collect();
    let (name, rest) = (parts[0], &parts[1..]);
    let (version, date) = match rest.len() {
        1 => (Some(rest[0]), None),
        3 => (
            None,
            Some(date_of(rest).ok_or_else(|| bad("the date is not YYYY-MM-DD"))?),
        ),
        4 => (
            Some(rest[0]),
            Some(date_of(&rest[1..]).ok_or_else(|| bad("the date is not YYYY-MM-DD"))?),
        ),
        _ => return Err(bad("expected name-version, name-version-date or name-date")),
    };
    if let Some(v) = version
        && !is_version(v)
    {
        return Err(bad("the version must be numbers separated by dots"));
    }
    match name {
        "python" => {
            if date.is_some() {
                return Err(bad("a Python runtime takes no date"));
            }
            let v = version.unwrap_or_default();
            let mut nums = v.split('.');
            let major = nums.next().unwrap_or_default();
            match (major, nums.next()) {
                ("3", minor) => Ok(Runtime::Python {
                    version: minor.map(|minor| format!("3.{minor}")),
                }),
                // Python 2 only as 2.7, from conda (as repo2docker builds it).
                ("2", Some("7")) => Ok(Runtime::Python {
                    version: Some("2.7".into()),
                }),
                _ => Err(bad("only Python 3 and 2.7 are supported")),
            }
        }
        "r" => {
            if let Some(d) = &date
                && d.as_str() < OLDEST_SNAPSHOT
            {
                return Err(PlanError::invalid(
                    path,
                    format!(
                        "the snapshot date {d} is before {OLDEST_SNAPSHOT}, the oldest CRAN snapshot that \
                         can be installed; choose a later date"
                    ),
                ));
            }
            Ok(Runtime::R {
                version: version.map(str::to_string),
                date,
            })
        }
        _ => Err(bad(&format!("unknown runtime name {name:?}"))),
    }
}

fn is_version(v: &str) -> bool {
    !v.is_empty()
        && v.split('.').count() <= 3
        && v.split('.')
            .all(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()))
}

fn date_of(parts: &[&str]) -> Option<String> {
    let [y, m, d] = parts else { return None };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(y, 4) && digits(m, 2) && digits(d, 2)) {
        return None;
    }
    let (month, day): (u32, u32) = (m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(format!("{y}-{m}-{d}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            parse("runtime.txt", "python-3.12\n").unwrap(),
            Runtime::Python {
                version: Some("3.12".into())
            }
        );
        assert_eq!(
            parse("runtime.txt", "python-3").unwrap(),
            Runtime::Python { version: None }
        );
        assert_eq!(
            parse("runtime.txt", "r-4.4-2024-06-01").unwrap(),
            Runtime::R {
                version: Some("4.4".into()),
                date: Some("2024-06-01".into())
            }
        );
        assert_eq!(
            parse("runtime.txt", "r-2024-06-01").unwrap(),
            Runtime::R {
                version: None,
                date: Some("2024-06-01".into())
            }
        );
        assert_eq!(
            parse("runtime.txt", "r-4.4").unwrap(),
            Runtime::R {
                version: Some("4.4".into()),
                date: None
            }
        );
    }

    #[test]
    fn python_2_is_2_7_only() {
        assert_eq!(
            parse("runtime.txt", "python-2.7").unwrap(),
            Runtime::Python {
                version: Some("2.7".into())
            }
        );
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "ruby-3.1",
            "python-2.6",
            "python-2",
            "r-4.4-2024-13-01",
            "r-4.4-2017-01-01",
            "python-3.12-2024-01-01",
            "a-b-c",
            "python-3.x",
            "python-3.12\npython-3.11",
        ] {
            assert!(parse("runtime.txt", bad).is_err(), "{bad:?} should fail");
        }
    }
}
