//! `kiln catalog`: a community's catalogue. `validate` reads community files offline; the other
//! subcommands ask a running `kiln serve` (its JSON API), as the community's admin.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Args)]
pub struct CatalogCommand {
    /// The service's address, with its base path.
    #[arg(
        long,
        env = "KILN_SERVICE_URL",
        default_value = "http://127.0.0.1:8585/",
        global = true
    )]
    service: String,
    /// The community's admin token (or the operator's build token, or a hub token of an admin).
    #[arg(
        long,
        env = "KILN_CATALOG_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Check community files without a service: every file of the folder (or the files given),
    /// each problem with its file, line and column. Exits 1 when one has a problem.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List a community's entries and their versions.
    List { community: String },
    /// Check entries (all of the community's, or the one named): a new version is built when the
    /// ref moved or the base image changed (or always, with --rebuild), smoke-tested and promoted
    /// as the entry says. Waits for each and prints what it did.
    Check {
        community: String,
        entry: Option<String>,
        /// Build a new version even when nothing changed.
        #[arg(long)]
        rebuild: bool,
    },
    /// Offer a version (a candidate waiting for promotion, or one deprecated or retired).
    Promote {
        community: String,
        entry: String,
        version: u32,
    },
    /// Mark an offered version as deprecated, with the reason users see beside it.
    Deprecate {
        community: String,
        entry: String,
        version: u32,
        #[arg(long)]
        reason: String,
    },
    /// Stop offering a version (retention may then delete its image).
    Retire {
        community: String,
        entry: String,
        version: u32,
        #[arg(long)]
        reason: String,
    },
    /// Keep offering a version under a label ("Fall 2026 course"), however many newer ones come.
    Pin {
        community: String,
        entry: String,
        version: u32,
        #[arg(long)]
        label: String,
    },
    /// Remove a version's pin.
    Unpin {
        community: String,
        entry: String,
        version: u32,
    },
    /// Print the spawn form's profile list (KubeSpawner's profile_list JSON).
    Profiles { community: String },
    /// Pull every image the spawn form offers onto the service's engine, before a class.
    Prewarm { community: String },
    /// What changed between two versions of an entry: packages added, removed and changed per
    /// package manager and environment, the runtimes, the base image (as `kiln diff` prints it).
    Diff {
        community: String,
        entry: String,
        from: u32,
        to: u32,
        /// Print the diff as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete from the registry the images of versions nobody keeps (retired, broken or failed,
    /// not pinned, their digest not shared with a kept version). A dry run unless --apply.
    Prune {
        community: String,
        /// Delete, instead of listing what would be deleted.
        #[arg(long)]
        apply: bool,
    },
}

impl CatalogCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = Client {
            base: with_slash(&self.service),
            token: self.token.clone(),
            http: reqwest::Client::new(),
        };
        match self.action {
            Action::Validate { paths } => validate(&paths),
            Action::List { community } => {
                let catalog = client
                    .get(&format!("api/communities/{community}/catalog"))
                    .await?;
                print_catalog(&catalog);
                Ok(ExitCode::SUCCESS)
            }
            Action::Profiles { community } => {
                let list = client
                    .get(&format!("communities/{community}/profiles"))
                    .await?;
                println!("{}", serde_json::to_string_pretty(&list)?);
                Ok(ExitCode::SUCCESS)
            }
            Action::Diff {
                community,
                entry,
                from,
                to,
                json,
            } => {
                let answer = client
                    .get(&format!(
                        "api/communities/{community}/entries/{entry}/diff?from={from}&to={to}"
                    ))
                    .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&answer)?);
                } else {
                    let diff: kiln_sbom::ContentsDiff = serde_json::from_value(answer)
                        .context("the service's answer is not a diff")?;
                    print!("{}", diff.table());
                }
                Ok(ExitCode::SUCCESS)
            }
            Action::Prewarm { community } => {
                let answer = client
                    .post(&format!("api/communities/{community}/prewarm"), None)
                    .await?;
                for image in answer["images"].as_array().into_iter().flatten() {
                    match image["ok"].as_bool() {
                        Some(true) => println!(
                            "{}: on the engine ({:.1} s)",
                            image["image"].as_str().unwrap_or_default(),
                            image["seconds"].as_f64().unwrap_or_default()
                        ),
                        _ => println!(
                            "{}: {}",
                            image["image"].as_str().unwrap_or_default(),
                            image["error"].as_str().unwrap_or("failed")
                        ),
                    }
                }
                Ok(if answer["ok"] == true {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            Action::Prune { community, apply } => {
                let report = client
                    .post(
                        &format!("api/communities/{community}/retention?apply={apply}"),
                        None,
                    )
                    .await?;
                let verb = if apply { "deleted" } else { "would delete" };
                for image in report["images"].as_array().into_iter().flatten() {
                    println!(
                        "{verb} {}/v{}: {}@{}",
                        image["entry"].as_str().unwrap_or_default(),
                        image["version"],
                        image["image"].as_str().unwrap_or_default(),
                        image["digest"].as_str().unwrap_or_default()
                    );
                }
                eprintln!(
                    "kiln: {} images {verb}{}",
                    report["images"].as_array().map_or(0, Vec::len),
                    if apply {
                        ""
                    } else {
                        " (a dry run: --apply deletes them)"
                    }
                );
                Ok(ExitCode::SUCCESS)
            }
            Action::Check {
                community,
                entry,
                rebuild,
            } => {
                let reports: Vec<Value> = match entry {
                    Some(entry) => {
                        eprintln!("kiln: checking {community}/{entry} ...");
                        vec![
                            client
                                .post(
                                    &format!(
                                        "api/communities/{community}/entries/{entry}/check?wait=true&rebuild={rebuild}"
                                    ),
                                    None,
                                )
                                .await?,
                        ]
                    }
                    None => {
                        eprintln!("kiln: checking every entry of {community} ...");
                        client
                            .post(
                                &format!(
                                    "api/communities/{community}/check?wait=true&rebuild={rebuild}"
                                ),
                                None,
                            )
                            .await?["reports"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    }
                };
                let mut failed = false;
                for report in reports {
                    let outcome = report["outcome"].as_str().unwrap_or("?");
                    println!(
                        "{community}/{}: {outcome}: {}",
                        report["entry"].as_str().unwrap_or("?"),
                        report["message"].as_str().unwrap_or_default()
                    );
                    failed |= outcome == "failed";
                }
                Ok(if failed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
            Action::Promote {
                community,
                entry,
                version,
            } => {
                client
                    .operate(&community, &entry, version, "promote", json!({}))
                    .await
            }
            Action::Deprecate {
                community,
                entry,
                version,
                reason,
            } => {
                client
                    .operate(
                        &community,
                        &entry,
                        version,
                        "deprecate",
                        json!({"reason": reason}),
                    )
                    .await
            }
            Action::Retire {
                community,
                entry,
                version,
                reason,
            } => {
                client
                    .operate(
                        &community,
                        &entry,
                        version,
                        "retire",
                        json!({"reason": reason}),
                    )
                    .await
            }
            Action::Pin {
                community,
                entry,
                version,
                label,
            } => {
                client
                    .operate(&community, &entry, version, "pin", json!({"label": label}))
                    .await
            }
            Action::Unpin {
                community,
                entry,
                version,
            } => {
                client
                    .operate(&community, &entry, version, "unpin", json!({}))
                    .await
            }
        }
    }
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

/// `kiln catalog validate`: folders are read whole, files one by one.
fn validate(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut problems = 0;
    let mut good = 0;
    for path in paths {
        if path.is_dir() {
            let loaded = kiln_catalog::load_dir(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            for (id, community) in &loaded.communities {
                good += 1;
                println!("{id}: {}", described(community));
            }
            for e in &loaded.errors {
                problems += 1;
                eprintln!("{e}");
            }
        } else {
            match kiln_catalog::load::load_file(path) {
                Ok(community) => {
                    good += 1;
                    println!("{}: {}", community.id, described(&community));
                }
                Err(e) => {
                    problems += 1;
                    eprintln!("{e}");
                }
            }
        }
    }
    eprintln!("kiln: {good} community files are valid, {problems} have problems");
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_catalog(catalog: &Value) {
    let community = &catalog["community"];
    println!(
        "{} ({})",
        community["name"].as_str().unwrap_or_default(),
        community["id"].as_str().unwrap_or_default()
    );
    for entry in catalog["entries"].as_array().into_iter().flatten() {
        println!(
            "\n{}  {}  [{} @ {}, promotion {}]",
            entry["slug"].as_str().unwrap_or_default(),
            entry["name"].as_str().unwrap_or_default(),
            entry["source"].as_str().unwrap_or_default(),
            entry["ref"].as_str().unwrap_or_default(),
            entry["promotion"].as_str().unwrap_or_default()
        );
        if let Some(check) = entry["last_check"].as_object() {
            println!(
                "  last check: {}",
                check
                    .get("result")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            );
        }
        for v in entry["versions"].as_array().into_iter().flatten() {
            let pinned = v["pinned"]
                .as_str()
                .map(|l| format!("  pinned: {l}"))
                .unwrap_or_default();
            println!(
                "  v{:<4} {:<10} {}  {}{}{}",
                v["number"],
                v["state"].as_str().unwrap_or_default(),
                v["commit"]
                    .as_str()
                    .unwrap_or_default()
                    .get(..12)
                    .unwrap_or_default(),
                v["image"].as_str().unwrap_or_default(),
                pinned,
                v["reason"]
                    .as_str()
                    .map(|r| format!("  ({r})"))
                    .unwrap_or_default()
            );
        }
    }
}

struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let request = match &self.token {
            Some(token) => request.header("Authorization", format!("token {token}")),
            None => request,
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the service at {}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "the service answered {status}: {}",
                body["error"].as_str().unwrap_or("no reason given")
            );
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let request = self.http.post(format!("{}{path}", self.base));
        self.send(match body {
            Some(body) => request.json(&body),
            None => request,
        })
        .await
    }

    async fn operate(
        &self,
        community: &str,
        entry: &str,
        version: u32,
        operation: &str,
        body: Value,
    ) -> anyhow::Result<ExitCode> {
        let answer = self
            .post(
                &format!(
                    "api/communities/{community}/entries/{entry}/versions/{version}/{operation}"
                ),
                Some(body),
            )
            .await?;
        println!(
            "{community}/{entry} v{version}: {}{}",
            answer["state"].as_str().unwrap_or_default(),
            answer["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// A community's name and how many entries it has, as `validate` lists it.
fn described(community: &kiln_catalog::Community) -> String {
    let n = community.entries.len();
    let entries = if n == 1 { "entry" } else { "entries" };
    format!("{} ({n} {entries})", community.name)
}
