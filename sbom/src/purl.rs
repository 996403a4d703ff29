//! Package URLs (purl) for the record's packages, with the `packageurl` crate (which encodes and
//! sorts qualifiers as the purl spec says).
//!
//! | manager | purl |
//! |---|---|
//! | deb | `pkg:deb/<os id>/<name>@<version>?arch=<arch>&distro=<codename>` |
//! | python | `pkg:pypi/<name>@<version>` (`vcs_url=` for a VCS install, `download_url=` for an archive URL; none for a local folder) |
//! | conda | `pkg:conda/<name>@<version>?build=<build>&channel=<channel>&subdir=<subdir>&type=conda` |
//! | r | `pkg:cran/<name>@<version>`; `pkg:bioconductor/…` for Bioconductor, `pkg:github/<user>/<repo>@<sha>` for GitHub remotes; none for R's base packages |
//! | julia | `pkg:julia/<name>@<version>?uuid=<uuid>` |
//! | npm | `pkg:npm/<scope>/<name>@<version>` |
//! | base image | `pkg:oci/<name>@<digest>?repository_url=<registry/repository>&tag=<tag>` |

use packageurl::PackageUrl;

use crate::record::{
    BaseImage, CondaPackage, DebPackage, JuliaPackage, NpmPackage, Os, PythonPackage, RPackage,
};

fn build(
    ty: &str,
    namespace: Option<&str>,
    name: &str,
    version: Option<&str>,
    qualifiers: &[(&str, &str)],
) -> Option<String> {
    let mut purl = PackageUrl::new(ty.to_string(), name.to_string()).ok()?;
    if let Some(ns) = namespace {
        purl.with_namespace(ns.to_string()).ok()?;
    }
    if let Some(v) = version {
        purl.with_version(v.to_string()).ok()?;
    }
    for (k, v) in qualifiers {
        if !v.is_empty() {
            purl.add_qualifier(k.to_string(), v.to_string()).ok()?;
        }
    }
    Some(purl.to_string())
}

pub fn deb(p: &DebPackage, os: Option<&Os>) -> Option<String> {
    let vendor = os.map_or("debian", |o| o.id.as_str());
    let distro = os.and_then(|o| {
        o.version_codename
            .clone()
            .or_else(|| o.version_id.as_ref().map(|v| format!("{}-{v}", o.id)))
    });
    build(
        "deb",
        Some(vendor),
        &p.name,
        Some(&p.version),
        &[
            ("arch", &p.architecture),
            ("distro", distro.as_deref().unwrap_or_default()),
        ],
    )
}

pub fn python(p: &PythonPackage) -> Option<String> {
    let mut qualifiers = Vec::new();
    let vcs_url;
    if let Some(du) = &p.direct_url {
        match du.kind.as_str() {
            "vcs" => {
                let vcs = du.vcs.as_deref().unwrap_or("git");
                vcs_url = match &du.commit_id {
                    Some(c) => format!("{vcs}+{}@{c}", du.url),
                    None => format!("{vcs}+{}", du.url),
                };
                qualifiers.push(("vcs_url", vcs_url.as_str()));
            }
            "archive" if !du.url.starts_with("file:") => {
                qualifiers.push(("download_url", du.url.as_str()));
            }
            // A local folder or file is not a PyPI package of that name.
            _ => return None,
        }
    }
    build("pypi", None, &p.name, Some(&p.version), &qualifiers)
}

pub fn conda(p: &CondaPackage) -> Option<String> {
    let channel = p.channel.as_deref().map(conda_channel_name);
    let kind = match p.url.as_deref() {
        Some(u) if u.ends_with(".tar.bz2") => "tar.bz2",
        Some(u) if u.ends_with(".conda") => "conda",
        _ => "",
    };
    build(
        "conda",
        None,
        &p.name,
        Some(&p.version),
        &[
            ("build", &p.build),
            ("channel", channel.as_deref().unwrap_or_default()),
            ("subdir", p.subdir.as_deref().unwrap_or_default()),
            ("type", kind),
        ],
    )
}

/// A channel's short name on anaconda.org (`conda-forge`, `main`); any other channel by URL.
fn conda_channel_name(channel: &str) -> String {
    match url::Url::parse(channel) {
        Ok(u)
            if matches!(
                u.host_str(),
                Some("conda.anaconda.org" | "repo.anaconda.com")
            ) =>
        {
            u.path_segments()
                .and_then(|mut s| s.rfind(|s| !s.is_empty()).map(String::from))
                .unwrap_or_else(|| channel.to_string())
        }
        _ => channel.to_string(),
    }
}

pub fn r(p: &RPackage) -> Option<String> {
    if p.priority.as_deref() == Some("base") {
        return None;
    }
    if let Some(remote) = &p.remote
        && remote.kind == "github"
        && let Some((user, repo)) = remote.repo.as_deref().and_then(|r| r.split_once('/'))
    {
        let version = remote.sha.as_deref().unwrap_or(&p.version);
        return build("github", Some(user), repo, Some(version), &[]);
    }
    let ty = match p.repository.as_deref() {
        Some(r) if r.starts_with("BioC") => "bioconductor",
        _ => "cran",
    };
    build(ty, None, &p.name, Some(&p.version), &[])
}

pub fn julia(p: &JuliaPackage) -> Option<String> {
    build(
        "julia",
        None,
        &p.name,
        p.version.as_deref(),
        &[("uuid", &p.uuid)],
    )
}

pub fn npm(p: &NpmPackage) -> Option<String> {
    let (namespace, name) = match p.name.split_once('/') {
        Some((scope, name)) if scope.starts_with('@') => (Some(scope), name),
        _ => (None, p.name.as_str()),
    };
    build("npm", namespace, name, Some(&p.version), &[])
}

/// The base image, when its digest is known.
pub fn oci(image: &BaseImage) -> Option<String> {
    let digest = image.digest.as_deref()?;
    let (repository, tag) = split_reference(&image.name);
    let name = repository.rsplit('/').next().unwrap_or(repository);
    build(
        "oci",
        None,
        name,
        Some(digest),
        &[
            ("repository_url", repository),
            ("tag", tag.unwrap_or_default()),
        ],
    )
}

/// `registry/repository` and the tag of an image reference (a digest part is dropped).
pub(crate) fn split_reference(reference: &str) -> (&str, Option<&str>) {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (without_digest, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DirectUrl, RRemote};

    fn bookworm() -> Os {
        Os {
            id: "debian".into(),
            version_id: Some("12".into()),
            version_codename: Some("bookworm".into()),
            pretty_name: None,
        }
    }

    #[test]
    fn deb_purls_carry_arch_and_distro_and_encode_epochs() {
        let p = DebPackage {
            name: "bsdutils".into(),
            architecture: "amd64".into(),
            version: "1:2.38.1-5+deb12u3".into(),
            source: "util-linux".into(),
            source_version: None,
        };
        assert_eq!(
            deb(&p, Some(&bookworm())).unwrap(),
            "pkg:deb/debian/bsdutils@1:2.38.1-5%2Bdeb12u3?arch=amd64&distro=bookworm"
        );
    }

    #[test]
    fn pypi_purls_use_the_normalised_name_and_vcs_urls() {
        let mut p = PythonPackage {
            name: "jupyter-server".into(),
            version: "2.14.2".into(),
            ..Default::default()
        };
        assert_eq!(python(&p).unwrap(), "pkg:pypi/jupyter-server@2.14.2");
        p.direct_url = Some(DirectUrl {
            url: "https://git.example.org/lab/tool.git".into(),
            kind: "vcs".into(),
            vcs: Some("git".into()),
            commit_id: Some("0123abcd".into()),
            ..Default::default()
        });
        assert_eq!(
            python(&p).unwrap(),
            "pkg:pypi/jupyter-server@2.14.2?vcs_url=git%2Bhttps:%2F%2Fgit.example.org%2Flab%2Ftool.git%400123abcd"
        );
        p.direct_url = Some(DirectUrl {
            url: "file:///home/jovyan".into(),
            kind: "dir".into(),
            ..Default::default()
        });
        assert_eq!(python(&p), None, "a local folder is not a PyPI package");
    }

    #[test]
    fn conda_purls_name_build_channel_and_subdir() {
        let p = CondaPackage {
            name: "python".into(),
            version: "3.12.7".into(),
            build: "hc5c86c4_0_cpython".into(),
            subdir: Some("linux-64".into()),
            channel: Some("https://conda.anaconda.org/conda-forge".into()),
            url: Some("https://conda.anaconda.org/conda-forge/linux-64/python-3.12.7-hc5c86c4_0_cpython.conda".into()),
            sha256: None,
        };
        assert_eq!(
            conda(&p).unwrap(),
            "pkg:conda/python@3.12.7?build=hc5c86c4_0_cpython&channel=conda-forge&subdir=linux-64&type=conda"
        );
    }

    #[test]
    fn r_julia_npm_and_oci_purls() {
        let cli = RPackage {
            name: "cli".into(),
            version: "3.6.3".into(),
            repository: Some("CRAN".into()),
            ..Default::default()
        };
        assert_eq!(r(&cli).unwrap(), "pkg:cran/cli@3.6.3");
        let gh = RPackage {
            name: "praise".into(),
            version: "1.0.0".into(),
            remote: Some(RRemote {
                kind: "github".into(),
                repo: Some("rladies/praise".into()),
                sha: Some("5d1e5e0b".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(r(&gh).unwrap(), "pkg:github/rladies/praise@5d1e5e0b");
        let base = RPackage {
            name: "stats".into(),
            version: "4.2.2".into(),
            priority: Some("base".into()),
            ..Default::default()
        };
        assert_eq!(r(&base), None);
        let ij = JuliaPackage {
            name: "IJulia".into(),
            uuid: "7073ff75-c697-5162-941a-fcdaad2a7d2a".into(),
            version: Some("1.24.2".into()),
            ..Default::default()
        };
        assert_eq!(
            julia(&ij).unwrap(),
            "pkg:julia/IJulia@1.24.2?uuid=7073ff75-c697-5162-941a-fcdaad2a7d2a"
        );
        let scoped = NpmPackage {
            name: "@jupyterlab/builder".into(),
            version: "4.2.5".into(),
        };
        assert_eq!(npm(&scoped).unwrap(), "pkg:npm/%40jupyterlab/builder@4.2.5");
        let image = BaseImage {
            name: "127.0.0.1:5000/kiln/base:bookworm".into(),
            digest: Some("sha256:abcd".into()),
        };
        assert_eq!(
            oci(&image).unwrap(),
            "pkg:oci/base@sha256:abcd?repository_url=127.0.0.1:5000%2Fkiln%2Fbase&tag=bookworm"
        );
    }
}
