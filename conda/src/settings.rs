//! Where conda packages come from and where they are kept: channels and their mirrors, the
//! persistent caches, and the virtual packages of the target image.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::error::CondaError;

/// Virtual packages of kiln's default base image (Debian bookworm, x86_64): glibc 2.36.
pub const DEFAULT_VIRTUAL_PACKAGES: &str = "__glibc=2.36,__linux=6.1,__unix=0,__archspec=1=x86_64";

/// How kiln reaches conda channels and what it solves for.
#[derive(Clone, Debug)]
pub struct CondaSettings {
    /// Persistent cache: `repodata/` (the gateway's) and `pkgs/` (extracted packages), shared by
    /// every build on this machine.
    pub cache_dir: PathBuf,
    /// Channel (a name such as `conda-forge`, or its URL) -> the URL it is fetched from instead.
    pub mirrors: Vec<(String, Url)>,
    /// The target image's virtual packages: (name, version, build string).
    pub virtual_packages: Vec<(String, String, String)>,
    /// Longest wait for a connection to a channel.
    pub connect_timeout: Duration,
    /// What channels and package URLs may be fetched from: [`kiln_net::Policy::open`] on the
    /// command line, the service's public policy there. Mirror hosts are the operator's and are
    /// always allowed.
    pub policy: kiln_net::Policy,
}

impl CondaSettings {
    /// Settings from the environment:
    /// - `KILN_CONDA_CACHE`: the cache folder (default `$XDG_CACHE_HOME/kiln/conda`, or
    ///   `~/.cache/kiln/conda`);
    /// - `KILN_CONDA_MIRRORS`: `CHANNEL=URL` pairs separated by commas, e.g.
    ///   `conda-forge=http://127.0.0.1:8000/,defaults=https://mirror.example/main/`;
    /// - `KILN_CONDA_VIRTUAL_PACKAGES`: `NAME=VERSION[=BUILD]` separated by commas (default: the
    ///   bookworm base image, [`DEFAULT_VIRTUAL_PACKAGES`]).
    pub fn from_env() -> Result<CondaSettings, CondaError> {
        let cache_dir = match std::env::var_os("KILN_CONDA_CACHE") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => match std::env::var_os("XDG_CACHE_HOME") {
                Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("kiln/conda"),
                _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                    .join(".cache/kiln/conda"),
            },
        };
        let mirrors = parse_mirrors(&std::env::var("KILN_CONDA_MIRRORS").unwrap_or_default())?;
        let virtual_packages = parse_virtual_packages(
            &std::env::var("KILN_CONDA_VIRTUAL_PACKAGES")
                .unwrap_or_else(|_| DEFAULT_VIRTUAL_PACKAGES.to_string()),
        )?;
        Ok(CondaSettings {
            cache_dir,
            mirrors,
            virtual_packages,
            connect_timeout: Duration::from_secs(10),
            policy: kiln_net::Policy::open(),
        })
    }

    /// Settings with a given cache folder and mirrors, and the default virtual packages.
    pub fn new(cache_dir: impl Into<PathBuf>, mirrors: Vec<(String, Url)>) -> CondaSettings {
        CondaSettings {
            cache_dir: cache_dir.into(),
            mirrors,
            virtual_packages: parse_virtual_packages(DEFAULT_VIRTUAL_PACKAGES)
                .expect("the default virtual packages parse"),
            connect_timeout: Duration::from_secs(10),
            policy: kiln_net::Policy::open(),
        }
    }

    /// The policy fetches go through: the configured one, with every mirror's host and port
    /// allowed (the operator named them).
    pub fn fetch_policy(&self) -> Result<kiln_net::Policy, CondaError> {
        if self.policy.is_open() || self.mirrors.is_empty() {
            return Ok(self.policy.clone());
        }
        let mut entries: Vec<String> = vec![self.policy.allowed().to_string()];
        entries.retain(|e| !e.is_empty());
        for (_, mirror) in &self.mirrors {
            if let (Some(host), Some(port)) = (mirror.host(), mirror.port_or_known_default()) {
                let host = match host {
                    url::Host::Ipv6(ip) => format!("[{ip}]"),
                    other => other.to_string(),
                };
                entries.push(format!("{host}:{port}"));
            }
        }
        let allowed = kiln_net::AllowList::parse(&entries.join(","))
            .map_err(|e| CondaError::Invalid(format!("a conda mirror: {e}")))?;
        Ok(self.policy.clone().with_allowed(allowed))
    }

    /// Refuse a channel or package URL that the policy does not let kiln fetch.
    pub fn check_url(&self, url: &Url) -> Result<(), CondaError> {
        kiln_net::http::check(&self.fetch_policy()?, url).map_err(|e| CondaError::Refused {
            url: kiln_net::error::redact(url),
            reason: e.to_string(),
        })
    }

    pub fn package_cache_dir(&self) -> PathBuf {
        self.cache_dir.join("pkgs")
    }

    pub fn repodata_cache_dir(&self) -> PathBuf {
        self.cache_dir.join("repodata")
    }

    /// A channel as written in `environment.yml`: its canonical URL (what the lock records) and
    /// the URL it is fetched from (its mirror, or itself).
    pub fn channel(&self, channel: &str) -> Result<Channel, CondaError> {
        let canonical = canonical_channel_url(channel)?;
        let fetch = self
            .mirrors
            .iter()
            .find(|(name, _)| {
                name == channel
                    || canonical_channel_url(name).is_ok_and(|u| u.as_str() == canonical.as_str())
            })
            .map(|(_, url)| with_slash(url.clone()))
            .unwrap_or_else(|| canonical.clone());
        Ok(Channel {
            name: channel.to_string(),
            canonical,
            fetch,
        })
    }

    /// The URL a package of the lock is downloaded from: a mirror's when its channel has one.
    pub fn fetch_url(&self, url: &Url) -> Url {
        for (name, mirror) in &self.mirrors {
            if let Ok(canonical) = canonical_channel_url(name)
                && let Some(rest) = url.as_str().strip_prefix(canonical.as_str())
                && let Ok(mapped) = with_slash(mirror.clone()).join(rest)
            {
                return mapped;
            }
        }
        url.clone()
    }

    /// The guarded client (kiln-net: checked addresses, redirects checked) that gives up quickly on
    /// channels that cannot be reached.
    pub fn client(&self) -> Result<reqwest::Client, CondaError> {
        let options = kiln_net::http::Options {
            connect_timeout: self.connect_timeout,
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: concat!("kiln/", env!("CARGO_PKG_VERSION")).to_string(),
            ..kiln_net::http::Options::default()
        };
        kiln_net::http::guarded_client(&self.fetch_policy()?, &options)
            .map_err(|e| CondaError::Invalid(format!("cannot make the HTTP client: {e}")))
    }
}

/// A channel, with the URL the lock records and the URL kiln fetches from.
#[derive(Clone, Debug)]
pub struct Channel {
    pub name: String,
    pub canonical: Url,
    pub fetch: Url,
}

impl Channel {
    /// A package URL from the fetched channel, rewritten to the canonical channel.
    pub fn canonical_url(&self, url: &Url) -> Url {
        match url.as_str().strip_prefix(self.fetch.as_str()) {
            Some(rest) => self.canonical.join(rest).unwrap_or_else(|_| url.clone()),
            None => url.clone(),
        }
    }
}

/// `conda-forge` -> `https://conda.anaconda.org/conda-forge/`; `defaults` -> Anaconda's main
/// channel; a URL stays itself (with a final slash).
pub fn canonical_channel_url(channel: &str) -> Result<Url, CondaError> {
    let channel = channel.trim();
    let bad = |why: &str| CondaError::Invalid(format!("the conda channel {channel:?} {why}"));
    if channel.contains("://") {
        let url = Url::parse(channel).map_err(|e| bad(&format!("is not a valid URL: {e}")))?;
        // A repository names channels: never let it read the build host's files.
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(
                "is not an http(s) URL; a local channel can only be a mirror (KILN_CONDA_MIRRORS)",
            ));
        }
        return Ok(with_slash(url));
    }
    if channel.is_empty()
        || !channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        || channel.contains("..")
    {
        return Err(bad("is not a channel name or URL"));
    }
    let url = match channel {
        "defaults" => "https://repo.anaconda.com/pkgs/main/".to_string(),
        name => format!("https://conda.anaconda.org/{}/", name.trim_matches('/')),
    };
    Url::parse(&url).map_err(|e| bad(&e.to_string()))
}

fn with_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// `CHANNEL=URL,CHANNEL=URL`.
pub fn parse_mirrors(text: &str) -> Result<Vec<(String, Url)>, CondaError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (channel, url) = pair.split_once('=').ok_or_else(|| {
                CondaError::Invalid(format!("KILN_CONDA_MIRRORS: {pair:?} is not CHANNEL=URL"))
            })?;
            let url = Url::parse(url.trim()).map_err(|e| {
                CondaError::Invalid(format!("KILN_CONDA_MIRRORS: {url:?} is not a URL: {e}"))
            })?;
            Ok((channel.trim().to_string(), url))
        })
        .collect()
}

/// `NAME=VERSION[=BUILD],...`.
pub fn parse_virtual_packages(text: &str) -> Result<Vec<(String, String, String)>, CondaError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let mut parts = entry.splitn(3, '=');
            let name = parts.next().unwrap_or_default().trim();
            let version = parts.next().map(str::trim).unwrap_or("0");
            let build = parts.next().map(str::trim).unwrap_or("0");
            if !name.starts_with("__") {
                return Err(CondaError::Invalid(format!(
                    "virtual package {entry:?}: names start with __ (e.g. __glibc=2.36)"
                )));
            }
            Ok((name.to_string(), version.to_string(), build.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_and_mirrors() {
        let settings = CondaSettings::new(
            "/tmp/x",
            parse_mirrors("conda-forge=http://127.0.0.1:9/ch").unwrap(),
        );
        let ch = settings.channel("conda-forge").unwrap();
        assert_eq!(
            ch.canonical.as_str(),
            "https://conda.anaconda.org/conda-forge/"
        );
        assert_eq!(ch.fetch.as_str(), "http://127.0.0.1:9/ch/");
        let pkg = Url::parse("http://127.0.0.1:9/ch/noarch/a-1-0.conda").unwrap();
        let canonical = ch.canonical_url(&pkg);
        assert_eq!(
            canonical.as_str(),
            "https://conda.anaconda.org/conda-forge/noarch/a-1-0.conda"
        );
        assert_eq!(settings.fetch_url(&canonical), pkg);
        assert!(canonical_channel_url("a b").is_err());
        assert!(canonical_channel_url("file:///etc/").is_err());
        // An operator's mirror may be local.
        let local = CondaSettings::new(
            "/tmp/x",
            parse_mirrors("conda-forge=file:///srv/channel/").unwrap(),
        );
        assert_eq!(
            local.channel("conda-forge").unwrap().fetch.as_str(),
            "file:///srv/channel/"
        );
        let vp = parse_virtual_packages(DEFAULT_VIRTUAL_PACKAGES).unwrap();
        assert_eq!(vp[0], ("__glibc".into(), "2.36".into(), "0".into()));
        assert_eq!(vp[3].2, "x86_64");
    }
}
