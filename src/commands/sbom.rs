//! `kiln sbom` and `kiln diff`: what an image holds, and what changed between two.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use kiln_builder::contents::{self, Found, Lookup, Place};
use kiln_builder::{Engine, EngineSettings};

/// Where to read a record from.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum ReadFrom {
    /// The engine when it has the image, else its registry.
    #[default]
    Auto,
    /// The engine's image (listed from the image when it has no record).
    Engine,
    /// The record attached beside the image in its registry.
    Registry,
}

impl ReadFrom {
    fn lookup(self) -> Lookup {
        match self {
            ReadFrom::Auto => Lookup::Auto,
            ReadFrom::Engine => Lookup::Engine,
            ReadFrom::Registry => Lookup::Registry,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum Format {
    /// One package a row: manager, environment, name, version.
    #[default]
    Table,
    /// CycloneDX 1.6 JSON.
    Cyclonedx,
    /// kiln's contents record (JSON, schema kiln.contents/v1).
    Kiln,
}

#[derive(Args)]
pub struct SbomCommand {
    /// The image, by tag or digest (registry/repository:tag or @sha256:…).
    image: String,
    /// What to print.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Where to read the record.
    #[arg(long, value_enum, default_value_t)]
    from: ReadFrom,
}

/// The record of `image`, and a note on standard error when it was not found in the image.
async fn find(image: &str, from: ReadFrom) -> anyhow::Result<Found> {
    kiln_registry::name::validate(image)
        .map_err(|e| anyhow::anyhow!("{image:?} is not an image name: {e}"))?;
    let engine = match from {
        ReadFrom::Registry => None,
        // Without an engine, auto still reads the registry.
        ReadFrom::Auto => Engine::connect(EngineSettings::from_env()).await.ok(),
        ReadFrom::Engine => Some(Engine::connect(EngineSettings::from_env()).await?),
    };
    let found = contents::find(engine.as_ref(), None, image, from.lookup()).await?;
    if found.place == Place::ListedNow {
        eprintln!(
            "kiln: {image} has no record of what it holds (kiln did not build it, or an older kiln did); its packages were listed from the image now"
        );
    }
    Ok(found)
}

impl SbomCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let found = find(&self.image, self.from).await?;
        let out = match self.format {
            Format::Table => kiln_sbom::table(&found.contents),
            Format::Kiln => {
                let mut json = serde_json::to_string_pretty(&found.contents)?;
                json.push('\n');
                json
            }
            Format::Cyclonedx => {
                let mut json = String::from_utf8(kiln_sbom::to_cyclonedx(&found.contents)?)?;
                json.push('\n');
                json
            }
        };
        print!("{out}");
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Args)]
pub struct DiffCommand {
    /// The older image (tag or digest).
    from_image: String,
    /// The newer image; or give --source instead.
    #[arg(required_unless_present = "source")]
    to_image: Option<String>,
    /// Compare with what a repository's current files give instead of a second image: the source
    /// (a local folder, a git URL, gh:org/repo) is built on the engine, or its image reused.
    #[arg(long, value_name = "SOURCE", conflicts_with = "to_image")]
    source: Option<String>,
    /// Print the difference as JSON.
    #[arg(long)]
    json: bool,
    /// Where to read both records.
    #[arg(long, value_enum, default_value_t)]
    from: ReadFrom,
    /// Exit with status 1 when the images differ (as diff(1)).
    #[arg(long)]
    exit_code: bool,
}

impl DiffCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let (a, b) = match (&self.to_image, &self.source) {
            (Some(to), _) => {
                tokio::try_join!(find(&self.from_image, self.from), find(to, self.from))?
            }
            (None, Some(source)) => {
                let a = find(&self.from_image, self.from).await?;
                (a, built_from_source(source).await?)
            }
            (None, None) => anyhow::bail!("give a second image or --source"),
        };
        let mut diff = kiln_sbom::diff(&a.contents, &b.contents);
        if let (Some(old), Some(new)) = (a.size, b.size) {
            diff = diff.with_sizes(old, new);
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&diff)?);
        } else {
            print!("{}", diff.table());
        }
        Ok(if self.exit_code && !diff.is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }
}

/// The record of the image that `source`'s current files give: built (or reused) on the engine,
/// with the build's progress on standard error.
async fn built_from_source(source: &str) -> anyhow::Result<Found> {
    use clap::Parser;
    #[derive(Parser)]
    struct Source {
        #[command(flatten)]
        build: crate::commands::build::BuildArgs,
    }
    let args = Source::try_parse_from(["kiln diff --source", source])?.build;
    let mut output = crate::output::Output::new(false);
    let Some(engine) = args.connect(&mut output).await else {
        anyhow::bail!("--source {source}: no engine to build it on");
    };
    let built = args.build(&engine, &mut output).await;
    output.finish();
    let built = built.map_err(|_| anyhow::anyhow!("--source {source}: the build failed"))?;
    match built.contents {
        Some(recorded) => {
            let size = engine
                .inspect_image(&built.image)
                .await?
                .map(|i| i.size.max(0) as u64);
            Ok(Found {
                contents: recorded.contents,
                place: Place::Engine,
                size,
            })
        }
        None => Ok(contents::find(Some(&engine), None, &built.image, Lookup::Engine).await?),
    }
}
