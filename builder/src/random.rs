//! Random identifiers and tokens, from the operating system's random source. There is no fallback:
//! a machine without one cannot issue tokens that a stranger could not guess.

use crate::error::BuildError;

/// `bytes` random bytes as lower-case hex (twice as many characters).
pub fn hex(bytes: usize) -> Result<String, BuildError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| BuildError::Random(e.to_string()))?;
    Ok(hex::encode(buffer))
}

/// kiln's own cache folder: `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln` (`/tmp/.cache/kiln`
/// without a home).
pub(crate) fn kiln_cache_dir() -> std::path::PathBuf {
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => std::path::PathBuf::from(dir).join("kiln"),
        _ => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
            .join(".cache/kiln"),
    }
}

/// The secret part of the build caches' mount ids: `KILN_CACHE_SALT`, or random bytes kept in
/// `$XDG_CACHE_HOME/kiln/cache-salt` (`~/.cache/kiln/cache-salt`), made on first use. A repository's
/// own Dockerfile cannot name a cache it does not know the id of.
pub fn cache_salt() -> Result<String, BuildError> {
    static SALT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(salt) = SALT.get() {
        return Ok(salt.clone());
    }
    let salt = match std::env::var("KILN_CACHE_SALT") {
        Ok(salt) if !salt.is_empty() => salt,
        _ => {
            let dir = kiln_cache_dir();
            let path = dir.join("cache-salt");
            match std::fs::read_to_string(&path) {
                Ok(salt) if salt.trim().len() >= 16 => salt.trim().to_string(),
                _ => {
                    let salt = hex(16)?;
                    std::fs::create_dir_all(&dir)
                        .and_then(|_| std::fs::write(&path, &salt))
                        .map_err(|e| BuildError::io(format!("writing {}", path.display()), e))?;
                    salt
                }
            }
        }
    };
    Ok(SALT.get_or_init(|| salt).clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_long_and_differ() {
        let (a, b) = (super::hex(16).unwrap(), super::hex(16).unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
