#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.
fn main() {
    print!("{}", kiln_sbom::collect::default_script());
}
