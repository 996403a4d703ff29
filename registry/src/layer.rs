//! Image layers from tar archives: gzip with a fixed header (no name, no mtime) so the same tar
//! always gives the same blob, and the two digests an image needs. A layer's blob is in memory (a
//! small one) or in a file (a large one: it is compressed and uploaded as a stream, never held
//! whole).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// Where a layer's compressed bytes are.
#[derive(Clone, Debug)]
pub enum Blob {
    Memory(bytes::Bytes),
    File(PathBuf),
}

/// A compressed layer ready to push.
#[derive(Clone, Debug)]
pub struct Layer {
    pub blob: Blob,
    /// Bytes of the blob.
    pub size: u64,
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
            size: blob.len() as u64,
            blob: Blob::Memory(blob.into()),
        })
    }

    /// gzip the tar file `tar` at `level` into the file `blob`, reading and writing as a stream.
    pub fn from_tar_file(tar: &Path, blob: &Path, level: u32) -> std::io::Result<Layer> {
        let mut input = std::io::BufReader::new(std::fs::File::open(tar)?);
        let output = Hashing::new(std::io::BufWriter::new(std::fs::File::create(blob)?));
        let mut encoder = GzEncoder::new(output, Compression::new(level));
        let mut tar_hash = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            tar_hash.update(&buffer[..n]);
            encoder.write_all(&buffer[..n])?;
        }
        let mut output = encoder.finish()?;
        output.inner.flush()?;
        Ok(Layer {
            digest: format!("sha256:{}", hex::encode(output.hash.finalize())),
            diff_id: format!("sha256:{}", hex::encode(tar_hash.finalize())),
            size: output.written,
            blob: Blob::File(blob.to_path_buf()),
        })
    }

    /// A blob compressed earlier, in a file, whose tar has `diff_id`: its digest is read from it.
    pub fn from_blob_file(blob: &Path, diff_id: &str) -> std::io::Result<Layer> {
        let mut input = std::io::BufReader::new(std::fs::File::open(blob)?);
        let mut hash = Sha256::new();
        let size = std::io::copy(&mut input, &mut HashWriter(&mut hash))?;
        Ok(Layer {
            digest: format!("sha256:{}", hex::encode(hash.finalize())),
            diff_id: diff_id.to_string(),
            size,
            blob: Blob::File(blob.to_path_buf()),
        })
    }
}

/// Counts and hashes what passes through to `inner`.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    written: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            written: 0,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `sha256:<hex>` of a file's bytes, read as a stream.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut input = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut hash = Sha256::new();
    std::io::copy(&mut input, &mut HashWriter(&mut hash))?;
    Ok(format!("sha256:{}", hex::encode(hash.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic() {
        let a = Layer::from_tar(b"some tar bytes").unwrap();
        let b = Layer::from_tar(b"some tar bytes").unwrap();
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, a.diff_id);
    }

    #[test]
    fn a_file_layer_is_the_same_as_one_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let tar: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("layer.tar"), &tar).unwrap();
        let memory = Layer::from_tar_at(&tar, 1).unwrap();
        let file = Layer::from_tar_file(
            &dir.path().join("layer.tar"),
            &dir.path().join("layer.tar.gz"),
            1,
        )
        .unwrap();
        assert_eq!(
            (&file.digest, &file.diff_id),
            (&memory.digest, &memory.diff_id)
        );
        assert_eq!(file.size, memory.size);
        let again = Layer::from_blob_file(&dir.path().join("layer.tar.gz"), &file.diff_id).unwrap();
        assert_eq!(again.digest, file.digest);
        assert_eq!(
            sha256_file(&dir.path().join("layer.tar")).unwrap(),
            memory.diff_id
        );
    }
}
