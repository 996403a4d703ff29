//! The environment key: a sha256 over everything the environment layers depend on.
//!
//! It covers the environment part of the plan (base image, user, build environment, kiln's files and
//! steps, system packages, environment steps) and the bytes of every file those steps read. The
//! repository copy, the steps after it and the runtime settings are outside it, so a code-only change
//! keeps the key, and two repositories with the same environment files share it.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::plan::{CondaEnvironment, Environment};

/// Bumped when the meaning of a plan's environment changes without its data changing.
const KEY_FORMAT: &str = "kiln-environment-v2";

#[derive(Serialize)]
struct KeyInput<'a> {
    format: &'static str,
    environment: &'a Environment,
    /// (path, sha256 of the bytes), in the order the steps read them.
    inputs: Vec<(&'a str, String)>,
}

/// The key of an environment whose steps read `inputs` (path and bytes).
pub fn environment_key<'a>(
    environment: &'a Environment,
    inputs: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> String {
    let input = KeyInput {
        format: KEY_FORMAT,
        environment,
        inputs: inputs
            .into_iter()
            .map(|(path, bytes)| (path, hex::encode(Sha256::digest(bytes))))
            .collect(),
    };
    // Struct fields serialise in declaration order and every map is a BTreeMap: the JSON is canonical.
    let json = serde_json::to_vec(&input).expect("plan data always serialises");
    format!("sha256:{}", hex::encode(Sha256::digest(&json)))
}

/// The environment as its key sees it before a conda environment is locked: the conda part is
/// only its prefix, because the key is completed by the lock ([`with_conda_lock`]), which is what
/// the environment file, its channels and specs resolved to. Two repositories whose files differ
/// but resolve to the same packages so share one environment.
pub fn before_conda_lock(environment: &Environment) -> Environment {
    let mut env = environment.clone();
    if let Some(conda) = &mut env.conda {
        *conda = CondaEnvironment {
            prefix: conda.prefix.clone(),
            ..CondaEnvironment::default()
        };
    }
    env
}

/// The key of an environment whose conda part was solved to `lock` (an `@EXPLICIT` list): the
/// plan's key (which covers everything but the conda environment's files) combined with the
/// exact packages.
pub fn with_conda_lock(key: &str, lock: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"kiln-environment-conda-lock-v1\n");
    hasher.update(key.as_bytes());
    hasher.update(b"\n");
    hasher.update(lock.as_bytes());
    format!("sha256:{}", hex::encode(hasher.finalize()))
}
