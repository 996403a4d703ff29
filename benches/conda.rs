//! Benchmark (issue 7), the native side: a conda environment from its specs to layers pushed onto a
//! base image in a registry, with no engine. Run by benches/conda.sh, which serves the fixture channel
//! and the registry, and measures the engine side in the same run.
//!
//! Settings (environment): KILN_BENCH_CHANNEL (the channel URL, mapped to conda-forge),
//! KILN_BENCH_BASE (an image in the registry to append the layers to), KILN_BENCH_TARGET (a
//! repository prefix in the same registry), KILN_BENCH_ROUNDS (default 5), KILN_BENCH_SPECS
//! (comma-separated; default the conda-fixture example's).
//! Prints one `phase<TAB>round<TAB>seconds` line per measure.

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

use std::time::Instant;

use kiln_conda::{CondaSettings, Request};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; run benches/conda.sh"))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let channel = url::Url::parse(&var("KILN_BENCH_CHANNEL")).unwrap();
    let base = var("KILN_BENCH_BASE");
    let target = var("KILN_BENCH_TARGET");
    let rounds: usize = std::env::var("KILN_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let specs = std::env::var("KILN_BENCH_SPECS")
        .unwrap_or_else(|_| "python=3.11,pip,kiln-greet,kiln-hello".into());
    let request = Request {
        channels: vec!["conda-forge".into()],
        specs: specs.split(',').map(|s| s.trim().to_string()).collect(),
    };
    let registry = kiln_registry::Registry::for_reference(&base, None).unwrap();
    let warm_cache = tempfile::tempdir().unwrap();
    let warm = CondaSettings::new(
        warm_cache.path(),
        vec![("conda-forge".into(), channel.clone())],
    );
    let report = |phase: &str, round: usize, started: Instant| {
        println!("{phase}\t{round}\t{:.4}", started.elapsed().as_secs_f64());
    };

    for round in 1..=rounds {
        // Solve with a cold repodata cache, then with the warm one.
        let cold_cache = tempfile::tempdir().unwrap();
        let cold = CondaSettings::new(
            cold_cache.path(),
            vec![("conda-forge".into(), channel.clone())],
        );
        let started = Instant::now();
        let lock = kiln_conda::solve(&cold, &request).await.unwrap();
        report("solve-cold", round, started);
        let started = Instant::now();
        kiln_conda::solve(&warm, &request).await.unwrap();
        report("solve-warm", round, started);

        // Install and pack, cold package cache.
        let root = tempfile::tempdir().unwrap();
        let started = Instant::now();
        kiln_conda::install(&cold, &lock, root.path())
            .await
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        kiln_conda::pack(root.path(), 1000, out.path()).unwrap();
        report("install-pack-cold", round, started);

        // The whole native path with warm caches: solve, install, pack, compress, push.
        let root = tempfile::tempdir().unwrap();
        let mut total = 0.0;
        let phase = |name: &str, started: Instant| {
            let seconds = started.elapsed().as_secs_f64();
            println!("{name}\t{round}\t{seconds:.4}");
            seconds
        };
        let started = Instant::now();
        let lock = kiln_conda::solve(&warm, &request).await.unwrap();
        total += phase("total-part-solve", started);
        let started = Instant::now();
        kiln_conda::install(&warm, &lock, root.path())
            .await
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        let packed = kiln_conda::pack(root.path(), 1000, out.path()).unwrap();
        total += phase("install-pack-warm", started);
        // Compression as the builder does it, in parallel: from scratch, then from kiln's blob cache
        // (the same tars were compressed before: the same lock, or the same Python).
        let scratch = tempfile::tempdir().unwrap();
        let started = Instant::now();
        kiln_builder::conda::compress_layers(&packed, scratch.path()).unwrap();
        let cold_compress = phase("compress-cold", started);
        let started = Instant::now();
        let layers =
            kiln_builder::conda::compress_layers(&packed, &warm_cache.path().join("layers"))
                .unwrap();
        let warm_compress = phase("compress-warm", started);
        let new_layers: Vec<kiln_registry::NewLayer> = layers
            .iter()
            .zip(&packed)
            .map(|(layer, p)| kiln_registry::NewLayer {
                layer,
                created_by: format!("conda {}", p.name),
            })
            .collect();
        let started = Instant::now();
        // A new repository each round: every layer is uploaded, none is found there.
        let name = format!("{target}native-{round}:1");
        kiln_registry::assemble(
            &registry,
            &kiln_registry::Assembly {
                base: &base,
                target: &name,
                layers: &new_layers,
                config: &kiln_registry::ConfigUpdate {
                    created: "1970-01-01T00:00:00Z".into(),
                    ..Default::default()
                },
            },
            &mut |_: String| {},
        )
        .await
        .unwrap();
        total += phase("push", started);
        println!("total-warm\t{round}\t{:.4}", total + warm_compress);
        println!(
            "total-warm-no-blob-cache\t{round}\t{:.4}",
            total + cold_compress
        );
    }
}
