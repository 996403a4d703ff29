//! `requirements.txt` (pip's format). kiln does not resolve it (uv does, in the build); it only needs
//! to know whether the file refers to other files of the repository, because then it cannot be
//! installed before the repository is copied.

use crate::parse::content_lines;

/// The first line that refers to a local file or folder (`-r`, `-c`, `-e .`, `./pkg`, `file:`),
/// as `(line number, line)`.
pub fn local_reference(text: &str) -> Option<(usize, String)> {
    content_lines(text)
        .find(|(_, line)| is_local(line))
        .map(|(n, line)| (n, line.to_string()))
}

fn is_local(line: &str) -> bool {
    let line = line.split(" #").next().unwrap_or(line).trim();
    const OPTIONS: &[&str] = &[
        "-r",
        "--requirement",
        "-c",
        "--constraint",
        "-e",
        "--editable",
    ];
    if OPTIONS.iter().any(|o| {
        line.strip_prefix(o).is_some_and(|rest| {
            rest.is_empty() || rest.starts_with([' ', '=', '\t']) || !o.starts_with("--")
        })
    }) {
        return true;
    }
    if line.starts_with('-') {
        // Other options (--index-url, --hash...) are not local.
        return false;
    }
    line.starts_with('.')
        || line.starts_with('/')
        || line.starts_with("file:")
        || line.contains(" @ file:")
        || line.starts_with('~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local() {
        assert_eq!(local_reference("numpy\n-e .\n").unwrap().0, 2);
        assert!(local_reference("-r other.txt").is_some());
        assert!(local_reference("--requirement=other.txt").is_some());
        assert!(local_reference("./mypkg").is_some());
        assert!(local_reference("pkg @ file:///x").is_some());
        assert!(
            local_reference("numpy==2.0\npandas>=2 # comment\n--index-url https://x\n").is_none()
        );
        assert!(local_reference("# -e .\n").is_none());
    }
}
