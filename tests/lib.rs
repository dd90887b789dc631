//! Harness for the end-to-end tests and the pipeline benchmark: starts each
//! Slipway service as its own OS process against a fresh RabbitMQ vhost and
//! a fresh PostgreSQL database, and talks to the gateway over HTTP.
//!
//! Each [`Cluster`] has names of its own (vhost, database), so tests run
//! side by side. Service logs go to files in a temporary folder; a test
//! that fails prints where they are.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use slipway_testkit::{pg::PgDatabase, rabbit::RabbitVhost};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// One running service process.
#[derive(Debug)]
pub struct ServiceProcess {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl ServiceProcess {
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then wait for the exit status.
    pub async fn terminate(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.pid();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        anyhow::ensure!(
            status.success(),
            "could not signal {} (pid {pid})",
            self.name
        );
        tokio::time::timeout(within, self.child.wait())
            .await
            .with_context(|| format!("{} did not exit within {within:?} of SIGTERM", self.name))?
            .context("wait failed")
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// Current resident memory (VmRSS), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid(), "VmRSS:")
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Knobs for a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Extra environment variables (mostly `SLIPWAY__...`) for every service.
    pub env: BTreeMap<String, String>,
    /// Start one of each worker (tests that want other counts pass false and spawn their own).
    pub start_workers: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            env: BTreeMap::new(),
            start_workers: true,
        }
    }
}

/// A gateway and workers, each its own process, on a private vhost and database.
#[derive(Debug)]
pub struct Cluster {
    pub vhost: RabbitVhost,
    pub db: PgDatabase,
    pub gateway: ServiceProcess,
    pub gateway_url: String,
    /// Gateway replicas started after the first, with their URLs.
    pub extra_gateways: Vec<(ServiceProcess, String)>,
    pub workers: Vec<ServiceProcess>,
    pub logs: tempfile::TempDir,
    env: BTreeMap<String, String>,
    /// Sends the admin token on every request.
    pub http: reqwest::Client,
    /// An admin's API token, created with `slipway-gateway create-token`.
    pub admin_token: String,
    spawned: usize,
}

impl Cluster {
    pub async fn start(options: ClusterOptions) -> anyhow::Result<Cluster> {
        let vhost = slipway_testkit::rabbit::fresh_vhost().await?;
        let db = slipway_testkit::pg::fresh_database().await?;
        let logs = tempfile::Builder::new().prefix("slipway-e2e-").tempdir()?;
        let mut env = BTreeMap::from([
            ("SLIPWAY__BUS__URL".to_string(), vhost.amqp_url()),
            ("SLIPWAY__DATABASE__URL".to_string(), db.url().to_string()),
            (
                "SLIPWAY__GATEWAY__LISTEN".to_string(),
                "127.0.0.1:0".to_string(),
            ),
            ("SLIPWAY__BUS__RETRY_BASE_MS".to_string(), "50".to_string()),
            ("SLIPWAY__BUS__RETRY_MAX_MS".to_string(), "200".to_string()),
            (
                "SLIPWAY__BUS__RECONNECT_MAX_MS".to_string(),
                "500".to_string(),
            ),
            (
                "SLIPWAY__GATEWAY__OUTBOX_POLL_MS".to_string(),
                "100".to_string(),
            ),
            (
                "SLIPWAY__TELEMETRY__LOG_FILTER".to_string(),
                "info".to_string(),
            ),
            // One artifact store for the cluster, as in production.
            (
                "SLIPWAY__ARTIFACTS__URL".to_string(),
                logs.path().join("artifacts").display().to_string(),
            ),
            (
                "SLIPWAY__ENVIRONMENTS__IMPORT_POLL_MS".to_string(),
                "100".to_string(),
            ),
            (
                "SLIPWAY__ENVIRONMENTS__IMPORT_POLL_MAX_MS".to_string(),
                "400".to_string(),
            ),
        ]);
        env.extend(options.env);
        let admin_token = create_token(&env, "e2e-admin", &["admin"]).await?;
        let (gateway, gateway_url) = spawn_gateway(0, &env, logs.path()).await?;
        let mut cluster = Cluster {
            vhost,
            db,
            gateway,
            gateway_url,
            extra_gateways: Vec::new(),
            workers: Vec::new(),
            logs,
            env,
            http: slipway_testkit::http_client_with_token(&admin_token)?,
            admin_token,
            spawned: 0,
        };
        if options.start_workers {
            for name in ["slipway-exporter", "slipway-validator", "slipway-importer"] {
                cluster.spawn_worker(name).await?;
            }
        }
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// Start another gateway replica; returns its URL.
    pub async fn spawn_gateway(&mut self) -> anyhow::Result<String> {
        self.spawned += 1;
        let (p, url) = spawn_gateway(self.spawned, &self.env, self.logs.path()).await?;
        self.extra_gateways.push((p, url.clone()));
        Ok(url)
    }

    /// Start another replica of a worker; returns its index in `workers`.
    pub async fn spawn_worker(&mut self, name: &str) -> anyhow::Result<usize> {
        self.spawned += 1;
        let p = spawn(name, self.spawned, &self.env, self.logs.path()).await?;
        self.workers.push(p);
        Ok(self.workers.len() - 1)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .http
                .get(format!("{}/readyz", self.gateway_url))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("gateway not ready after 30s; {}", self.log_hint());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Submit a deployment; returns the run id.
    pub async fn submit(&self, placeholder: Value) -> anyhow::Result<Uuid> {
        let body = json!({
            "solution_name": "ContosoCore",
            "source_environment": "dev",
            "target_environment": "test",
            "version": "1.0.0.1",
            "placeholder": placeholder,
        });
        let resp = self
            .http
            .post(format!("{}/api/v1/deployments", self.gateway_url))
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let value: Value = resp.json().await?;
        anyhow::ensure!(status == 202, "submit answered {status}: {value}");
        Ok(value["id"].as_str().context("no id")?.parse()?)
    }

    pub async fn run(&self, id: Uuid) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}/api/v1/deployments/{id}", self.gateway_url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    pub async fn history(&self, id: Uuid) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .http
            .get(format!(
                "{}/api/v1/deployments/{id}/events",
                self.gateway_url
            ))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Wait until the run reaches a terminal state; returns it.
    pub async fn wait_terminal(&self, id: Uuid, within: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let run = self.run(id).await?;
            if matches!(
                run["state"].as_str(),
                Some("succeeded" | "failed" | "canceled")
            ) {
                return Ok(run);
            }
            if Instant::now() > deadline {
                bail!(
                    "run {id} still `{}` after {within:?}; {}",
                    run["state"],
                    self.log_hint()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until a worker reports `status` for `step` of the run (e.g. the
    /// validator has started, so it holds the job).
    pub async fn wait_step(
        &self,
        id: Uuid,
        step: &str,
        status: &str,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if !events(&self.history(id).await?, step, status).is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "run {id}: no `{step} {status}` event within {within:?}; {}",
                    self.log_hint()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Messages waiting in a queue of this cluster's vhost (management API).
    pub async fn queue_depth(&self, queue: &str) -> anyhow::Result<u64> {
        Ok(self.queue_info(queue).await?["messages"]
            .as_u64()
            .unwrap_or(0))
    }

    /// A queue of this cluster's vhost as the management API describes it.
    pub async fn queue_info(&self, queue: &str) -> anyhow::Result<Value> {
        let url = format!(
            "http://127.0.0.1:15672/api/queues/{}/{queue}",
            urlencode(&self.vhost.name)
        );
        Ok(self
            .http
            .get(url)
            .basic_auth("guest", Some("guest"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Waits until `queue` has `expected` consumers (management API).
    pub async fn wait_consumers(
        &self,
        queue: &str,
        expected: u64,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.queue_info(queue).await?["consumers"]
                .as_u64()
                .unwrap_or(0);
            if seen == expected {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{queue} has {seen} consumers, not {expected}, after {within:?}; {}",
                    self.log_hint()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls the queue depth until it is `expected` (the management API's
    /// counts lag the broker by a few seconds); returns the last depth seen.
    pub async fn wait_queue_depth(
        &self,
        queue: &str,
        expected: u64,
        within: Duration,
    ) -> anyhow::Result<u64> {
        let deadline = Instant::now() + within;
        loop {
            let depth = self.queue_depth(queue).await?;
            if depth == expected || Instant::now() > deadline {
                return Ok(depth);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Where to look when something failed.
    pub fn log_hint(&self) -> String {
        let mut s = format!("service logs in {}", self.logs.path().display());
        let gateways =
            std::iter::once(&self.gateway).chain(self.extra_gateways.iter().map(|(p, _)| p));
        for p in gateways.chain(&self.workers) {
            s.push_str(&format!("\n--- {} ---\n{}", p.name, tail(&p.log)));
        }
        s
    }

    /// SIGTERM every process and check each exits 0.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        let gateways = std::iter::once(&mut self.gateway)
            .chain(self.extra_gateways.iter_mut().map(|(p, _)| p));
        for p in self.workers.iter_mut().chain(gateways) {
            if p.child.try_wait()?.is_some() {
                continue;
            }
            match p.terminate(Duration::from_secs(20)).await {
                Ok(status) if status.success() => {}
                Ok(status) => failures.push(format!("{} exited with {status}", p.name)),
                Err(err) => failures.push(format!("{err:#}")),
            }
        }
        if !failures.is_empty() {
            bail!("unclean shutdown: {failures:?}; {}", self.log_hint());
        }
        let _ = self.vhost.delete().await;
        let _ = self.db.drop_db().await;
        Ok(())
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

async fn spawn(
    name: &str,
    n: usize,
    env: &BTreeMap<String, String>,
    logs: &Path,
) -> anyhow::Result<ServiceProcess> {
    let exe = slipway_testkit::bins::path(name)?;
    let log = logs.join(format!("{name}-{n}.log"));
    let file = std::fs::File::create(&log)?;
    let child = Command::new(exe)
        .envs(env)
        .env_remove("SLIPWAY_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    Ok(ServiceProcess {
        name: format!("{name}-{n}"),
        child,
        log,
    })
}

/// Starts a gateway process and returns it with the URL it listens on.
async fn spawn_gateway(
    n: usize,
    env: &BTreeMap<String, String>,
    logs: &Path,
) -> anyhow::Result<(ServiceProcess, String)> {
    let mut gateway = spawn("slipway-gateway", n, env, logs).await?;
    match read_listen_line(&mut gateway).await {
        Ok(url) => Ok((gateway, url)),
        Err(err) => bail!("{err:#}\ngateway log:\n{}", tail(&gateway.log)),
    }
}

async fn read_listen_line(gateway: &mut ServiceProcess) -> anyhow::Result<String> {
    let stdout = gateway
        .child
        .stdout
        .take()
        .context("gateway stdout not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("gateway did not report its address within 30s")??
        .context("gateway exited before listening")?;
    let url = line
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line from the gateway: {line}"))?
        .to_string();
    // Keep draining stdout so the gateway never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(url)
}

/// Runs `slipway-gateway create-token` against the cluster's database and
/// returns the token it prints.
pub async fn create_token(
    env: &BTreeMap<String, String>,
    subject: &str,
    roles: &[&str],
) -> anyhow::Result<String> {
    let exe = slipway_testkit::bins::path("slipway-gateway")?;
    let mut command = Command::new(exe);
    command
        .envs(env)
        .env_remove("SLIPWAY_CONFIG")
        .args(["create-token", "--subject", subject]);
    for role in roles {
        command.args(["--role", role]);
    }
    let out = command
        .output()
        .await
        .context("cannot run slipway-gateway create-token")?;
    if !out.status.success() {
        bail!(
            "slipway-gateway create-token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Events of a history, filtered to run events of `step` with `status`.
pub fn events<'a>(history: &'a [Value], step: &str, status: &str) -> Vec<&'a Value> {
    history
        .iter()
        .filter(|e| e["kind"] == "event" && e["step"] == step && e["status"] == status)
        .collect()
}
