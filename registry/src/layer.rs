//! Image layers from tar archives: gzip with a fixed header (no name, no mtime) so the same tar
//! always gives the same blob, and the two digests an image needs.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// A compressed layer ready to push.
#[derive(Clone, Debug)]
pub struct Layer {
    /// The gzip bytes (the blob).
    pub blob: Vec<u8>,
    /// sha256 of the blob: its digest in the manifest.
    pub digest: String,
    /// sha256 of the uncompressed tar: its diff id in the image configuration.
    pub diff_id: String,
}

impl Layer {
    /// gzip at level 6 (repository layers: small, compressed often).
    pub fn from_tar(tar: &[u8]) -> std::io::Result<Layer> {
        Layer::from_tar_at(tar, 6)
    }

    /// gzip at `level` (0-9): a low level trades a larger blob for much less time.
    pub fn from_tar_at(tar: &[u8], level: u32) -> std::io::Result<Layer> {
        let mut encoder =
            GzEncoder::new(Vec::with_capacity(tar.len() / 2), Compression::new(level));
        encoder.write_all(tar)?;
        let blob = encoder.finish()?;
        Ok(Layer {
            digest: sha256_digest(&blob),
            diff_id: sha256_digest(tar),
            blob,
        })
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn deterministic() {
        let a = super::Layer::from_tar(b"some tar bytes").unwrap();
        let b = super::Layer::from_tar(b"some tar bytes").unwrap();
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, a.diff_id);
    }
}
