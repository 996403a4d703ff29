//! What the builder runs inside a built image to learn what it holds, and the format it prints.
//!
//! [`script`] gives one POSIX `sh` script (run it as `/bin/sh -c SCRIPT`, as any user, with the
//! image's own environment, no network). It uses only what the image has and skips every manager
//! that is absent. Its standard output is the input of [`crate::parse_collected`]; its standard
//! error is for people (show it when a section failed).
//!
//! # Output format `kiln.collect/v1`
//!
//! Marker lines start with [`MARKER`] (`@@kiln-collect@@`). No body line can: the bodies that are
//! files (which the repository may have written) have every line prefixed with `|` ([`QUOTED`]),
//! the others are the commands' own output, which never starts so, and a path with a newline is
//! skipped.
//!
//! ```text
//! @@kiln-collect@@ kiln.collect/v1           first line: the format
//! @@kiln-collect@@ begin KIND [ARGUMENT]     a section; ARGUMENT is a path, to the end of the line
//! ...body...
//! @@kiln-collect@@ end STATUS                the exit status of the section's command
//! @@kiln-collect@@ done                      last line: the output is complete
//! ```
//!
//! | kind | argument | body |
//! |---|---|---|
//! | `os` | | `/etc/os-release` (`KEY=value`, shell quoting), quoted |
//! | `arch` | | `dpkg --print-architecture` (or `uname -m`) |
//! | `deb` | | [`DPKG_QUERY`]: `status⇥package⇥version⇥architecture⇥source⇥source version`, one line each |
//! | `python` | `sys.prefix` candidate | one JSON line from [`PYTHON_SNIPPET`]: `{"prefix", "python", "implementation", "distributions": [{"name", "version", "installer", "requested", "direct_url"}], "lock"}`; `lock` is [`PYTHON_LOCK_FILE`] in the prefix, or null |
//! | `conda-lock` | prefix | `PREFIX/conda-meta/kiln-lock.txt`, kiln's `@EXPLICIT` lock (`URL#sha256:HEX`), quoted |
//! | `conda-meta` | prefix | the names of `PREFIX/conda-meta/*.json` (`name-version-build.json`), one a line, quoted |
//! | `r` | | TSV from [`R_SNIPPET`]: `version⇥X.Y.Z`, `repo⇥NAME⇥URL`, `columns⇥…`, then `package⇥…` rows |
//! | `julia` | manifest path | the `Manifest.toml` (or `JuliaManifest.toml`), quoted |
//! | `npm` | | [`NPM_LS`]: `npm ls -g --json --depth=0` |
//!
//! Python environments are looked for at the [`Targets`] paths and at `$VIRTUAL_ENV` and
//! `$CONDA_PREFIX`; conda prefixes at the targets and `$CONDA_PREFIX`; Julia manifests in
//! `$JULIA_PROJECT` (unless it is `@name`) and in every environment of the first depot
//! (`$JULIA_DEPOT_PATH`, else `~/.julia`). A path reached twice (a symlink, `$VIRTUAL_ENV` equal to
//! `/srv/venv`) is collected once.

use crate::error::SbomError;

/// The lock with hashes that kiln makes in a Python environment at build time
/// (`uv pip compile --generate-hashes` of what was installed), in the environment's prefix; the
/// `python` section carries it.
pub const PYTHON_LOCK_FILE: &str = "kiln-lock.txt";
/// The format of the collected output.
pub const FORMAT: &str = "kiln.collect/v1";
/// The start of every marker line.
pub const MARKER: &str = "@@kiln-collect@@";
/// The kinds of section whose body lines the script prefixes with `|` (files, file names).
pub const QUOTED: &[&str] = &["os", "conda-lock", "conda-meta", "julia"];

/// The `dpkg-query` command of the `deb` section. `db:Status-Abbrev` lets the parser keep only
/// installed packages (`-W` also lists removed ones whose configuration files remain).
pub const DPKG_QUERY: &str = r"dpkg-query -W -f='${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\n'";

/// Run with each environment's interpreter as `python -I -c SNIPPET` (isolated: no user site, no
/// `PYTHON*` variables, not the working directory). Prints one JSON line; the first distribution
/// of a name on `sys.path` is the one kept, as `import` would find it. Needs Python 3.8 or later.
/// Written without single quotes, so it can stand in a single-quoted shell word.
pub const PYTHON_SNIPPET: &str = r#"import importlib.metadata as md, json, platform, re, sys
seen = set()
out = []
for d in md.distributions():
    name = d.metadata.get("Name")
    version = d.metadata.get("Version")
    if not name or not version:
        continue
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        continue
    seen.add(key)
    def read(f):
        try:
            return d.read_text(f)
        except Exception:
            return None
    du = read("direct_url.json")
    try:
        du = json.loads(du) if du else None
    except ValueError:
        du = None
    out.append({"name": name, "version": version, "installer": (read("INSTALLER") or "").strip() or None, "requested": read("REQUESTED") is not None, "direct_url": du})
lock = None
try:
    with open(sys.prefix + "/kiln-lock.txt", encoding="utf-8") as f:
        lock = f.read(4194304)
except (OSError, ValueError):
    pass
print(json.dumps({"prefix": sys.prefix, "python": platform.python_version(), "implementation": sys.implementation.name, "distributions": out, "lock": lock}, sort_keys=True))
"#;

/// Run as `Rscript -e SNIPPET` (so the site profile, with kiln's CRAN snapshot, is read). Prints
/// TSV; tabs and newlines inside values become spaces, missing values are empty. Written with
/// double quotes only, so it can stand in a single-quoted shell word.
pub const R_SNIPPET: &str = r#"f <- c("Repository", "RemoteType", "RemoteUrl", "RemoteRepo", "RemoteUsername", "RemoteRef", "RemoteSha"); clean <- function(x) { x[is.na(x)] <- ""; gsub("[\t\r\n]+", " ", x) }; cat("version\t", R.version$major, ".", R.version$minor, "\n", sep = ""); r <- getOption("repos"); nm <- names(r); if (is.null(nm)) nm <- rep("", length(r)); for (i in seq_along(r)) cat("repo\t", clean(nm[i]), "\t", clean(r[[i]]), "\n", sep = ""); cols <- c("Package", "Version", "LibPath", "Priority", "Built", f); cat("columns\t", paste(cols, collapse = "\t"), "\n", sep = ""); m <- installed.packages(fields = f)[, cols, drop = FALSE]; for (i in seq_len(nrow(m))) cat("package\t", paste(clean(m[i, ]), collapse = "\t"), "\n", sep = "")"#;

/// The global npm packages.
/// The global npm packages; the variables keep npm from checking for its own updates over the
/// network and from writing log files.
pub const NPM_LS: &str = "NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_LOGS_MAX=0 npm ls -g --json --depth=0";

/// Where to look for environments, besides the variables the image sets. Each entry is a path,
/// and may hold `*` (a glob; no match is no environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets {
    /// Prefixes that may hold a Python environment (`PREFIX/bin/python`).
    pub python: Vec<String>,
    /// Prefixes that may hold a conda environment (`PREFIX/conda-meta`).
    pub conda: Vec<String>,
    /// Folders that may hold a Julia manifest.
    pub julia: Vec<String>,
}

impl Default for Targets {
    /// kiln's layout: `/srv/venv`, conda under `/srv/conda` (`/srv/conda/envs/notebook`).
    fn default() -> Self {
        Targets {
            python: vec![
                "/srv/venv".into(),
                "/srv/conda/envs/*".into(),
                "/srv/conda".into(),
            ],
            conda: vec!["/srv/conda/envs/*".into(), "/srv/conda".into()],
            julia: vec![],
        }
    }
}

/// The collection script for kiln's default layout.
pub fn default_script() -> String {
    script(&Targets::default()).expect("the default targets are plain paths")
}

/// The collection script for `targets`.
pub fn script(targets: &Targets) -> Result<String, SbomError> {
    let words = |paths: &[String]| -> Result<String, SbomError> {
        for p in paths {
            if p.is_empty()
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._-+@*".contains(&b))
            {
                return Err(SbomError::Invalid(format!(
                    "{p:?} cannot be a collection path: use letters, digits and / . _ - + @ * only"
                )));
            }
        }
        Ok(paths.join(" "))
    };
    let python = words(&targets.python)?;
    let conda = words(&targets.conda)?;
    let julia = if targets.julia.is_empty() {
        String::new()
    } else {
        words(&targets.julia)?
    };
    Ok(format!(
        r#"# kiln: what this image holds, for its contents record and SBOM.
# Output format {FORMAT} (see the kiln-sbom crate, module collect). POSIX sh, no network;
# a manager that is absent is skipped.
M={MARKER}
LC_ALL=C
export LC_ALL
begin() {{ printf '%s begin %s\n' "$M" "$*"; }}
end() {{ printf '\n%s end %s\n' "$M" "$1"; }}
seen=' '
nl='
'
once() {{
  case "$2" in *"$nl"*) return 1 ;; esac
  r=$(readlink -f "$2" 2>/dev/null) || r=$2
  case "$seen" in *" $1:$r "*) return 1 ;; esac
  seen="$seen$1:$r "
}}
printf '%s {FORMAT}\n' "$M"
for f in /etc/os-release /usr/lib/os-release; do
  if [ -r "$f" ]; then begin os; sed 's/^/|/' "$f"; end $?; break; fi
done
if command -v dpkg-query >/dev/null 2>&1; then
  begin arch; dpkg --print-architecture; end $?
  begin deb; {DPKG_QUERY}; end $?
else
  begin arch; uname -m; end $?
fi
PY='{PYTHON_SNIPPET}'
for p in {python} "${{VIRTUAL_ENV:-}}" "${{CONDA_PREFIX:-}}"; do
  [ -n "$p" ] && [ -x "$p/bin/python" ] && once python "$p" || continue
  begin python "$p"; "$p/bin/python" -I -c "$PY"; end $?
done
for p in {conda} "${{CONDA_PREFIX:-}}"; do
  [ -n "$p" ] && [ -d "$p/conda-meta" ] && once conda "$p" || continue
  if [ -r "$p/conda-meta/kiln-lock.txt" ]; then
    begin conda-lock "$p"; sed 's/^/|/' "$p/conda-meta/kiln-lock.txt"; end $?
  fi
  begin conda-meta "$p"
  for f in "$p"/conda-meta/*.json; do [ -e "$f" ] && printf '|%s\n' "${{f##*/}}"; done
  end 0
done
if command -v Rscript >/dev/null 2>&1; then
  begin r; Rscript -e '{R_SNIPPET}'; end $?
fi
jp=${{JULIA_PROJECT:-}}
case "$jp" in @*) jp= ;; esac
jd=${{JULIA_DEPOT_PATH:-${{HOME:-/nonexistent}}/.julia}}
jd=${{jd%%:*}}
for d in {julia} "$jp" "$jd"/environments/*; do
  [ -n "$d" ] && [ -d "$d" ] || continue
  for f in "$d/JuliaManifest.toml" "$d/Manifest.toml"; do
    if [ -r "$f" ]; then
      if once julia "$f"; then begin julia "$f"; sed 's/^/|/' "$f"; end $?; fi
      break
    fi
  done
done
if command -v npm >/dev/null 2>&1; then
  begin npm; {NPM_LS}; end $?
fi
printf '%s done\n' "$M"
"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_fit_in_single_quoted_shell_words() {
        assert!(!PYTHON_SNIPPET.contains('\''));
        assert!(!R_SNIPPET.contains('\''));
    }

    #[test]
    fn collection_paths_cannot_inject_shell() {
        let bad = Targets {
            python: vec!["/srv/venv; rm -rf /".into()],
            ..Default::default()
        };
        assert!(script(&bad).is_err());
        let bad = Targets {
            julia: vec!["$(id)".into()],
            ..Default::default()
        };
        assert!(script(&bad).is_err());
        assert!(default_script().contains("/srv/venv /srv/conda/envs/* /srv/conda"));
    }

    #[test]
    fn the_script_is_valid_posix_sh() {
        let status = std::process::Command::new("/bin/sh")
            .args(["-n", "-c", &default_script()])
            .status()
            .expect("/bin/sh runs");
        assert!(status.success());
    }
}
