//! Random identifiers and tokens, from the operating system's random source. There is no fallback:
//! a machine without one cannot issue tokens that a stranger could not guess.

use crate::error::BuildError;

/// `bytes` random bytes as lower-case hex (twice as many characters).
pub fn hex(bytes: usize) -> Result<String, BuildError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| BuildError::Random(e.to_string()))?;
    Ok(hex::encode(buffer))
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
