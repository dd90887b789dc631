//! The pipeline benchmark: pushes placeholder deployments through the four
//! services (each its own process, over the real RabbitMQ and PostgreSQL)
//! and prints deployments/s and end-to-end latency beside the raw 4-hop
//! RabbitMQ chain of `brokerbench`, measured in the same run, plus each
//! service's resident memory.
//!
//! ```text
//! cargo run --release -p slipway-tests --bin pipeline-bench -- \
//!     --deployments 2000 --brokerbench ../shared/tools/brokerbench
//! ```
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use serde_json::{Value, json};
use slipway_tests::{Cluster, ClusterOptions};
use time::OffsetDateTime;

#[derive(Debug, Parser)]
struct Args {
    /// Deployments pushed under load.
    #[arg(long, default_value_t = 2000)]
    deployments: usize,
    /// Submissions in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Sequential deployments for the unloaded latency.
    #[arg(long, default_value_t = 50)]
    unloaded: usize,
    /// Runs already in the database before the benchmark starts, each with
    /// seven history rows, as in a gateway that has been deploying for a
    /// while: what a deployment costs must not grow with what is stored.
    #[arg(long, default_value_t = 0)]
    prefill_runs: i64,
    /// An environment variable for every service process, `KEY=VALUE`
    /// (repeatable): to compare settings, e.g. `SLIPWAY__BUS__PREFETCH=128`
    /// or `TOKIO_WORKER_THREADS=1` (the gateway's runtime threads).
    #[arg(long = "service-env", value_parser = key_value)]
    service_env: Vec<(String, String)>,
    /// The brokerbench folder (a Cargo project), for the raw baseline.
    #[arg(long, env = "SLIPWAY_BROKERBENCH")]
    brokerbench: PathBuf,
}

fn key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{arg}` is not KEY=VALUE")),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn timestamp(v: &Value, field: &str) -> anyhow::Result<OffsetDateTime> {
    let s = v[field]
        .as_str()
        .with_context(|| format!("run without {field}: {v}"))?;
    Ok(OffsetDateTime::parse(
        s,
        &time::format_description::well_known::Rfc3339,
    )?)
}

/// Server-side end-to-end latency of each run: created -> succeeded.
fn latencies_ms(runs: &[Value]) -> anyhow::Result<Vec<f64>> {
    let mut out: Vec<f64> = runs
        .iter()
        .map(|r| {
            Ok(
                (timestamp(r, "updated_at")? - timestamp(r, "created_at")?).as_seconds_f64()
                    * 1000.0,
            )
        })
        .collect::<anyhow::Result<_>>()?;
    out.sort_by(f64::total_cmp);
    Ok(out)
}

async fn wait_all(cluster: &Cluster, ids: &[uuid::Uuid]) -> anyhow::Result<Vec<Value>> {
    let mut runs = Vec::with_capacity(ids.len());
    for id in ids {
        let run = cluster.wait_terminal(*id, Duration::from_secs(600)).await?;
        if run["state"] != "succeeded" {
            bail!("run {id} ended {}: {}", run["state"], run["reason"]);
        }
        runs.push(run);
    }
    Ok(runs)
}

fn brokerbench(dir: &Path, messages: usize) -> anyhow::Result<f64> {
    let manifest = dir.join("Cargo.toml");
    anyhow::ensure!(
        manifest.exists(),
        "brokerbench not found at {}: pass --brokerbench DIR or set SLIPWAY_BROKERBENCH",
        dir.display()
    );
    let target = std::env::temp_dir().join("slipway-brokerbench-target");
    let out =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["run", "--quiet", "--release", "--manifest-path"])
            .arg(&manifest)
            .args(["--", &messages.to_string(), "4", "512"])
            .env("CARGO_TARGET_DIR", target)
            .output()
            .context("cannot run brokerbench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "brokerbench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("  brokerbench: {stdout}");
    let rate = stdout
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("chain_msgs_per_s="))
        .context("brokerbench printed no chain_msgs_per_s")?;
    Ok(rate.parse()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "pipeline-bench: {} deployments, concurrency {}",
        args.deployments, args.concurrency
    );
    let mut env: std::collections::BTreeMap<String, String> = [(
        "SLIPWAY__TELEMETRY__LOG_FILTER".to_string(),
        "warn".to_string(),
    )]
    .into();
    for (key, value) in &args.service_env {
        println!("  service environment: {key}={value}");
        env.insert(key.clone(), value.clone());
    }
    let options = ClusterOptions {
        env,
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(options).await?;
    if args.prefill_runs > 0 {
        prefill(cluster.db.url(), args.prefill_runs).await?;
    }

    // Warm up, then read idle memory.
    let warm = cluster.submit(json!({})).await?;
    wait_all(&cluster, &[warm]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let procs: Vec<_> = std::iter::once(&cluster.gateway)
        .chain(&cluster.workers)
        .collect();
    let idle: Vec<(String, u64)> = procs
        .iter()
        .map(|p| (p.name.clone(), p.rss_kib().unwrap_or(0)))
        .collect();

    // Unloaded: one deployment at a time.
    let mut unloaded = Vec::new();
    for _ in 0..args.unloaded {
        let id = cluster.submit(json!({})).await?;
        unloaded.extend(wait_all(&cluster, &[id]).await?);
    }
    let unloaded = latencies_ms(&unloaded)?;

    // The raw chain drifts by a fifth within minutes on shared machines, so
    // it is measured on both sides of the loaded run.
    println!("measuring the raw 4-hop chain (brokerbench) on the same broker, before...");
    let raw_before = brokerbench(&args.brokerbench, 20_000)?;

    // Loaded: N deployments, `concurrency` submissions in flight.
    let cpu_before = cpu_by_process(&cluster);
    let started = Instant::now();
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let cluster = std::sync::Arc::new(cluster);
    let mut tasks = Vec::with_capacity(args.deployments);
    for _ in 0..args.deployments {
        let permit = semaphore.clone().acquire_owned().await?;
        let c = cluster.clone();
        tasks.push(tokio::spawn(async move {
            let id = c.submit(json!({})).await;
            drop(permit);
            id
        }));
    }
    let mut ids = Vec::with_capacity(tasks.len());
    for t in tasks {
        ids.push(t.await??);
    }
    let submitted = started.elapsed();
    // Watch only the last submission (runs finish roughly in order), so the
    // benchmark's own polling does not load the gateway; then read them all.
    let last = *ids.last().context("no deployments")?;
    cluster
        .wait_terminal(last, Duration::from_secs(600))
        .await?;
    let wall = started.elapsed().as_secs_f64();
    let cpu_after = cpu_by_process(&cluster);
    let runs = wait_all(&cluster, &ids).await?;
    let first = runs
        .iter()
        .map(|r| timestamp(r, "created_at"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let last = runs
        .iter()
        .map(|r| timestamp(r, "updated_at"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let span = (*last.iter().max().context("no runs")? - *first.iter().min().context("no runs")?)
        .as_seconds_f64();
    let rate = args.deployments as f64 / span;
    let loaded = latencies_ms(&runs)?;
    let peak: Vec<(String, u64)> = procs_peak(&cluster);

    println!("... and after the pipeline run");
    let raw_after = brokerbench(&args.brokerbench, 20_000)?;
    let raw = (raw_before + raw_after) / 2.0;

    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| deployments | {} |", args.deployments);
    println!(
        "| runs stored before (--prefill-runs) | {} |",
        args.prefill_runs
    );
    println!("| submitted in | {:.2} s |", submitted.as_secs_f64());
    println!("| pipeline deployments/s (first created -> last succeeded) | {rate:.0} |");
    println!(
        "| raw 4-hop chain msgs/s (brokerbench, same run: before / after) | {raw_before:.0} / {raw_after:.0} |"
    );
    println!(
        "| ratio pipeline / raw (mean of before and after; each alone) | {:.2} ({:.2} / {:.2}) |",
        rate / raw,
        rate / raw_before,
        rate / raw_after
    );
    println!(
        "| unloaded p50 / p99 latency | {:.1} ms / {:.1} ms |",
        percentile(&unloaded, 0.5),
        percentile(&unloaded, 0.99)
    );
    println!(
        "| loaded p50 / p99 latency | {:.1} ms / {:.1} ms |",
        percentile(&loaded, 0.5),
        percentile(&loaded, 0.99)
    );
    for ((name, idle), (_, peak)) in idle.iter().zip(&peak) {
        println!(
            "| {name} resident idle / peak | {:.1} MB / {:.1} MB |",
            *idle as f64 / 1024.0,
            *peak as f64 / 1024.0
        );
    }
    println!();
    println!(
        "CPU seconds used while loaded ({wall:.1} s wall, 2 cores = {:.1} CPU s available):",
        wall * 2.0
    );
    for ((name, after), (_, before)) in cpu_after.iter().zip(&cpu_before) {
        println!("  {name:<24} {:>6.2} s", after - before);
    }
    match std::sync::Arc::try_unwrap(cluster) {
        Ok(c) => c.shutdown().await?,
        Err(_) => bail!("cluster still shared"),
    }
    Ok(())
}

/// Writes `runs` finished runs with seven history rows each straight into
/// the database (server-side, in two statements), then refreshes the
/// planner's statistics as autovacuum would.
async fn prefill(url: &str, runs: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    let pool = sqlx::PgPool::connect(url).await?;
    sqlx::query(
        "INSERT INTO runs (id, state, deployment, requested_by, created_at, updated_at) \
         SELECT 'prefill-' || g, 'succeeded', \
           '{\"solution_name\":\"Prefill\",\"source_environment\":\"dev\",\"target_environment\":\"test\"}', \
           'bench', 1, 1 FROM generate_series(1, $1) g",
    )
    .bind(runs)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO run_history (run_id, at, kind, service, message_id) \
         SELECT 'prefill-' || (g / 7), 1, 'event', 'bench', 'prefill-' || g \
         FROM generate_series(7, $1 * 7 + 6) g",
    )
    .bind(runs)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE").execute(&pool).await?;
    pool.close().await;
    println!(
        "  prefilled {runs} runs and {} history rows in {:.1} s",
        runs * 7,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn procs_peak(cluster: &Cluster) -> Vec<(String, u64)> {
    std::iter::once(&cluster.gateway)
        .chain(&cluster.workers)
        .map(|p| (p.name.clone(), p.peak_rss_kib().unwrap_or(0)))
        .collect()
}

/// CPU seconds (user + system) each process has used: the services, the
/// broker and the database server.
fn cpu_by_process(cluster: &Cluster) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = std::iter::once(&cluster.gateway)
        .chain(&cluster.workers)
        .map(|p| (p.name.clone(), cpu_seconds(&[p.pid()])))
        .collect();
    for (label, command) in [
        ("rabbitmq (beam.smp)", "beam.smp"),
        ("postgresql (all backends)", "postgres"),
    ] {
        out.push((label.to_string(), cpu_seconds(&pids_of(command))));
    }
    out.push((
        "this load generator".to_string(),
        cpu_seconds(&[std::process::id()]),
    ));
    out
}

fn pids_of(command: &str) -> Vec<u32> {
    std::process::Command::new("pgrep")
        .args(["-x", command])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command name, which is in parentheses.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .sum()
}
