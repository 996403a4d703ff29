//! Parsers for what [`crate::collect`] prints, and [`parse_collected`], which turns the whole
//! output into a [`Contents`] record.

pub mod conda;
pub mod deb;
pub mod julia;
pub mod npm;
pub mod os;
pub mod python;
pub mod r;

use crate::collect::{FORMAT, MARKER, QUOTED};
use crate::error::SbomError;
use crate::record::{Contents, ImageMeta};

/// One section of the collected output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section<'a> {
    pub kind: &'a str,
    /// The path the section is about (an environment's prefix, a manifest), or empty.
    pub argument: &'a str,
    /// The body, without the `|` that starts each line of a quoted section.
    pub body: String,
    pub status: i32,
    /// The line of the output where the body starts (1-based), for messages.
    pub first_line: usize,
}

/// Split collected output into its sections, checking that it is complete.
pub fn sections(output: &str) -> Result<Vec<Section<'_>>, SbomError> {
    let mut lines = output.lines().enumerate();
    let header = format!("{MARKER} {FORMAT}");
    match lines.next() {
        Some((_, first)) if first.trim_end() == header => {}
        Some((_, first)) if first.starts_with(MARKER) => {
            return Err(SbomError::Invalid(format!(
                "the collected output is in another format ({:?}); this kiln reads {FORMAT}",
                first.trim_start_matches(MARKER).trim()
            )));
        }
        _ => {
            return Err(SbomError::Incomplete(format!(
                "it does not start with {header:?}"
            )));
        }
    }
    let mut out = Vec::new();
    let mut open: Option<(&str, &str, usize, Vec<&str>)> = None;
    let mut done = false;
    for (i, line) in lines {
        let Some(rest) = line.strip_prefix(MARKER) else {
            match &mut open {
                Some((_, _, _, body)) => body.push(line),
                None if line.trim().is_empty() => {}
                None => {
                    return Err(SbomError::parse(
                        "collected output",
                        Some(i + 1),
                        "text outside any section",
                    ));
                }
            }
            continue;
        };
        let rest = rest.trim();
        let (word, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        match (word, open.take()) {
            ("begin", None) => {
                let (kind, argument) = tail.split_once(' ').unwrap_or((tail, ""));
                open = Some((kind, argument, i + 2, Vec::new()));
            }
            ("end", Some((kind, argument, first_line, body))) => {
                let status = tail.trim().parse::<i32>().map_err(|_| {
                    SbomError::parse(
                        "collected output",
                        Some(i + 1),
                        format!("{tail:?} is not an exit status"),
                    )
                })?;
                let body = if QUOTED.contains(&kind) {
                    let lines: Vec<&str> = body
                        .iter()
                        .map(|l| l.strip_prefix('|').unwrap_or(l))
                        .collect();
                    lines.join("\n")
                } else {
                    body.join("\n")
                };
                out.push(Section {
                    kind,
                    argument,
                    body,
                    status,
                    first_line,
                });
            }
            ("done", None) => {
                done = true;
                break;
            }
            (word, Some((kind, ..))) => {
                return Err(SbomError::Incomplete(format!(
                    "section {kind:?} has no end before {word:?} at line {}",
                    i + 1
                )));
            }
            (word, None) => {
                return Err(SbomError::parse(
                    "collected output",
                    Some(i + 1),
                    format!("unexpected marker {word:?}"),
                ));
            }
        }
    }
    if let Some((kind, ..)) = open {
        return Err(SbomError::Incomplete(format!(
            "section {kind:?} has no end"
        )));
    }
    if !done {
        return Err(SbomError::Incomplete(format!(
            "no final {MARKER} done line"
        )));
    }
    Ok(out)
}

/// Turn the whole output of the collection script into the image's contents record.
///
/// A section whose command failed is an error (the builder shows the script's standard error),
/// except `npm`, whose `ls` exits non-zero over problems it still reports in its JSON. Sections
/// of kinds this kiln does not know are ignored, so a newer script still parses.
pub fn parse_collected(output: &str, meta: ImageMeta) -> Result<Contents, SbomError> {
    let mut record = Contents::new(meta);
    let mut conda_locks = Vec::new();
    let mut conda_metas = Vec::new();
    for s in sections(output)? {
        let tolerated = s.kind == "npm" && s.status == 1;
        if s.status != 0 && !tolerated {
            return Err(SbomError::SectionFailed {
                section: if s.argument.is_empty() {
                    s.kind.to_string()
                } else {
                    format!("{} {}", s.kind, s.argument)
                },
                status: s.status,
            });
        }
        match s.kind {
            "os" => record.os = Some(os::parse(&s.body)?),
            "arch" => {
                let arch = s.body.trim();
                if !arch.is_empty() {
                    record.architecture = Some(arch.to_string());
                }
            }
            "deb" => record.deb = deb::parse(&s.body, s.first_line)?,
            "python" => record.python.push(python::parse(&s.body, s.argument)?),
            "conda-lock" => conda_locks.push((
                s.argument.to_string(),
                conda::parse_lock(&s.body, s.first_line)?,
            )),
            "conda-meta" => {
                conda_metas.push((s.argument.to_string(), conda::parse_meta_names(&s.body)))
            }
            "r" => record.r = Some(r::parse(&s.body, s.first_line)?),
            "julia" => record.julia.push(julia::parse(&s.body, s.argument)?),
            "npm" => record.npm = npm::parse(&s.body)?,
            _ => {}
        }
    }
    record.conda = conda::environments(conda_locks, conda_metas);
    record.normalise();
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(body: &str) -> String {
        format!("{MARKER} {FORMAT}\n{body}{MARKER} done\n")
    }

    #[test]
    fn sections_keep_their_body_argument_and_status() {
        let out = wrap(&format!(
            "{MARKER} begin arch\namd64\n\n{MARKER} end 0\n{MARKER} begin python /srv/my env\n{{}}\n{MARKER} end 3\n"
        ));
        let s = sections(&out).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].kind, s[0].body.trim(), s[0].status),
            ("arch", "amd64", 0)
        );
        assert_eq!((s[1].argument, s[1].status), ("/srv/my env", 3));
        assert_eq!(s[1].first_line, 7);
    }

    #[test]
    fn file_bodies_lose_the_bar_that_keeps_them_from_forging_markers() {
        let out = wrap(&format!(
            "{MARKER} begin julia /p/Manifest.toml\n|a = 1\n|{MARKER} done\n\n{MARKER} end 0\n{MARKER} begin npm\n|x\n{MARKER} end 0\n"
        ));
        let s = sections(&out).unwrap();
        assert_eq!(s[0].body, format!("a = 1\n{MARKER} done\n"));
        assert_eq!(s[1].body, "|x", "only quoted kinds are unquoted");
    }

    #[test]
    fn truncated_output_is_refused() {
        let out = format!("{MARKER} {FORMAT}\n{MARKER} begin deb\nii \ta\t1\tall\ta\t1\n");
        let e = sections(&out).unwrap_err().to_string();
        assert!(
            e.contains("incomplete") && e.contains("\"deb\" has no end"),
            "{e}"
        );
        let e = sections(&format!("{MARKER} {FORMAT}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("done"), "{e}");
        let e = sections("hello\n").unwrap_err().to_string();
        assert!(e.contains("does not start with"), "{e}");
    }

    #[test]
    fn a_failed_section_is_an_error_naming_it() {
        let out = wrap(&format!(
            "{MARKER} begin python /srv/venv\nTraceback\n{MARKER} end 1\n"
        ));
        let e = parse_collected(&out, ImageMeta::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`python /srv/venv` failed") && e.contains("status 1"),
            "{e}"
        );
    }

    #[test]
    fn unknown_sections_are_ignored() {
        let out = wrap(&format!("{MARKER} begin cargo\nx\n{MARKER} end 0\n"));
        let record = parse_collected(&out, ImageMeta::default()).unwrap();
        assert!(record.entries().is_empty());
    }
}
