//! The world the end-to-end deployment tests (`deploy.rs`) and the real
//! corpus deployments (`deploy_corpus.rs`) run in: a cluster of the four
//! services, a simulator with its environments registered in Slipway, and
//! the people who call the API.
// Each test binary uses its own part of this world.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::e2e::{OUTLOOK, SHAREPOINT, connection, id_of, send};
use serde_json::{Value, json};
use slipway_envsim::config::{EnvironmentConfig, UserConfig};
use slipway_envsim::{Config, DataLocation, EnvSim, Faults, Running};
use slipway_testkit::solution_zip::SolutionZip;
use slipway_tests::{Cluster, ClusterOptions};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// The simulator's static bearer token, handed to Slipway through a file.
pub const SIM_TOKEN: &str = "slipway-e2e-deploy";
pub const TEAMS: &str = "/providers/Microsoft.PowerApps/apis/shared_teams";
/// A user of every target environment, whom a stage may deploy as.
pub const RELEASE_USER: &str = "release@contoso.com";
/// How long one run may take from submission to its end (debug builds, two
/// cores, several scenarios at once).
pub const RUN_DEADLINE: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------ world

/// Someone calling the API with a token of their own.
#[derive(Debug)]
pub struct Actor {
    pub subject: String,
    pub http: reqwest::Client,
}

/// A pipeline as the tests use it: its id and its stages' ids, in order.
#[derive(Debug, Clone)]
pub struct Pipe {
    pub id: Uuid,
    pub stages: Vec<Uuid>,
    /// Each stage's request body, to change a setting with PUT.
    pub stage_bodies: Vec<Value>,
}

/// A cluster, a simulator with its environments registered in Slipway, a
/// maker and an approver.
pub struct World {
    pub cluster: Cluster,
    pub sim: Running,
    _dir: tempfile::TempDir,
    /// Environment name -> id in Slipway.
    pub envs: BTreeMap<String, Uuid>,
    pub maker: Actor,
    pub approver: Actor,
}

/// A target environment with the SharePoint, Outlook and Teams connections
/// most flows use, named `<env>-sharepoint`, `<env>-office365`, `<env>-teams`.
pub fn target_env(name: &str) -> EnvironmentConfig {
    target_env_with(name, &[])
}

/// [`target_env`] plus one connection, `<env>-<n>`, of each connector in
/// `connectors` (those of real solutions' connection references).
pub fn target_env_with(name: &str, connectors: &[String]) -> EnvironmentConfig {
    let mut connections = vec![
        connection(&format!("{name}-sharepoint"), SHAREPOINT, "SharePoint"),
        connection(&format!("{name}-office365"), OUTLOOK, "Office 365 Outlook"),
        connection(&format!("{name}-teams"), TEAMS, "Microsoft Teams"),
    ];
    for (n, connector) in connectors.iter().enumerate() {
        connections.push(connection(&format!("{name}-{n}"), connector, connector));
    }
    EnvironmentConfig {
        platform_solutions: vec!["AppModuleWebResources".into()],
        connections,
        // Whom a stage may deploy as.
        users: vec![UserConfig {
            domain_name: Some(RELEASE_USER.into()),
            ..UserConfig::default()
        }],
        ..EnvironmentConfig::new(name)
    }
}

pub fn at(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().unwrap(), &Rfc3339).unwrap()
}

/// The states a run moved through, in order.
pub fn transitions(history: &[Value]) -> Vec<String> {
    history
        .iter()
        .filter(|e| e["kind"] == "transition")
        .map(|e| e["state"].as_str().unwrap_or_default().to_owned())
        .collect()
}

impl World {
    /// Starts the cluster and a simulator serving `dev` (development),
    /// `test` and `prod`, plus `extra` target environments; registers them
    /// all; creates the maker and the approver.
    pub async fn start(extra: &[&str]) -> World {
        World::start_with(extra, &[]).await
    }

    /// [`World::start`] with a connection of each of `connectors` in every
    /// target environment.
    pub async fn start_with(extra: &[&str], connectors: &[String]) -> World {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("slipway-deploy-")
            .tempdir()
            .unwrap();
        let token_file: PathBuf = dir.path().join("envsim-token");
        std::fs::write(&token_file, format!("{SIM_TOKEN}\n")).unwrap();
        let mut config = Config::in_memory();
        // In a file, as `slipway dev` keeps it.
        config.data = DataLocation::File(dir.path().join("envsim.sqlite"));
        config.dev_tokens = vec![SIM_TOKEN.into()];
        config.environments = vec![EnvironmentConfig {
            platform_solutions: vec!["AppModuleWebResources".into()],
            ..EnvironmentConfig::new("dev")
        }];
        for name in ["test", "prod"].iter().chain(extra) {
            config.environments.push(target_env_with(name, connectors));
        }
        let names: Vec<String> = config.environments.iter().map(|e| e.name.clone()).collect();
        let (cluster, sim) = tokio::join!(
            Cluster::start(ClusterOptions::default()),
            EnvSim::start(config)
        );
        let (cluster, sim) = (cluster.unwrap(), sim.unwrap());
        let credentials = json!({
            "kind": "static_token",
            "token_ref": format!("file:{}", token_file.display()),
        });
        let mut envs = BTreeMap::new();
        for name in names {
            let kind = if name == "dev" {
                "development"
            } else {
                "target"
            };
            let (status, env) = send(
                cluster
                    .http
                    .post(format!("{}/api/v1/environments", cluster.gateway_url))
                    .json(&json!({
                        "name": name,
                        "url": sim.env_url(&name),
                        "kind": kind,
                        "credentials": credentials,
                    })),
            )
            .await;
            assert_eq!(status, 201, "register {name}: {env}");
            envs.insert(name, id_of(&env));
        }
        let maker = actor(&cluster, "e2e-maker", &["maker"]).await;
        let approver = actor(&cluster, "e2e-approver", &["approver"]).await;
        eprintln!("cluster and simulator ready in {:?}", started.elapsed());
        World {
            cluster,
            sim,
            _dir: dir,
            envs,
            maker,
            approver,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cluster.gateway_url)
    }

    /// Another person with a token and `roles`.
    pub async fn actor(&self, subject: &str, roles: &[&str]) -> Actor {
        actor(&self.cluster, subject, roles).await
    }

    /// Creates a pipeline deploying from dev through `stages` (name, target
    /// environment), each after the one before, shared with the maker and
    /// the approver.
    pub async fn pipeline(&self, name: &str, stages: &[(&str, &str)], allow_older: bool) -> Pipe {
        let admin = &self.cluster.http;
        let (status, pipeline) = send(admin.post(self.url("/api/v1/pipelines")).json(&json!({
            "name": name,
            "allow_redeploy_older": allow_older,
            "source_environment_ids": [self.envs["dev"]],
        })))
        .await;
        assert_eq!(status, 201, "create pipeline {name}: {pipeline}");
        let id = id_of(&pipeline);
        let mut ids: Vec<Uuid> = Vec::new();
        let mut bodies = Vec::new();
        for (stage, target) in stages {
            let body = json!({
                "name": stage,
                "previous_stage_id": ids.last(),
                "target_environment_ids": [self.envs[*target]],
            });
            let (status, created) = send(
                admin
                    .post(self.url(&format!("/api/v1/pipelines/{id}/stages")))
                    .json(&body),
            )
            .await;
            assert_eq!(status, 201, "add stage {stage} to {name}: {created}");
            ids.push(id_of(&created));
            bodies.push(body);
        }
        for who in [&self.maker, &self.approver] {
            self.share(id, &who.subject).await;
        }
        Pipe {
            id,
            stages: ids,
            stage_bodies: bodies,
        }
    }

    pub async fn share(&self, pipeline: Uuid, subject: &str) {
        let (status, body) = send(
            self.cluster
                .http
                .post(self.url(&format!("/api/v1/pipelines/{pipeline}/shares")))
                .json(&json!({"kind": "user", "name": subject})),
        )
        .await;
        assert_eq!(status, 200, "share {pipeline} with {subject}: {body}");
    }

    /// PUTs `body` as stage `stage` of `pipe` (as the admin).
    pub async fn update_stage(&self, pipe: &Pipe, stage: usize, body: &Value) -> (u16, Value) {
        let path = format!(
            "/api/v1/pipelines/{}/stages/{}",
            pipe.id, pipe.stages[stage]
        );
        send(self.cluster.http.put(self.url(&path)).json(body)).await
    }

    /// A Dataverse client of a simulated environment (the token Slipway
    /// reads from its file), polling imports every 50 ms.
    pub fn dataverse(&self, env: &str) -> slipway_dataverse::Client {
        crate::e2e::dataverse(&self.sim, SIM_TOKEN, env, RUN_DEADLINE)
    }

    /// Installs an unmanaged solution in dev, as a maker building it there.
    pub async fn install_in_dev(&self, solution: &SolutionZip) {
        crate::e2e::install_in_dev(&self.dataverse("dev"), solution).await;
    }

    /// The solution as installed in `env`, if it is.
    pub async fn installed(
        &self,
        env: &str,
        name: &str,
    ) -> Option<slipway_dataverse::InstalledSolution> {
        self.dataverse(env).solution(name).await.unwrap()
    }

    /// Every asynchronous operation (import) the environment has run.
    pub async fn operations(&self, env: &str) -> Vec<Value> {
        let (status, body) = send(
            slipway_testkit::http_client_with_token(SIM_TOKEN)
                .unwrap()
                .get(format!(
                    "{}/api/data/v9.2/asyncoperations",
                    self.sim.env_url(env)
                )),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["value"].as_array().unwrap().clone()
    }

    /// Sets an environment's faults through the simulator's fault endpoint.
    pub async fn set_faults(&self, env: &str, faults: &Faults) {
        let (status, body) = send(
            slipway_testkit::http_client()
                .unwrap()
                .put(format!("{}/_admin/{env}/faults", self.sim.base_url()))
                .json(faults),
        )
        .await;
        assert!(status < 300, "setting faults of {env}: {status} {body}");
    }

    /// POST /api/v1/deployments as `who`.
    pub async fn deploy(&self, who: &Actor, body: Value) -> (u16, Value) {
        send(who.http.post(self.url("/api/v1/deployments")).json(&body)).await
    }

    /// The maker deploys `solution` through stage `stage` of `pipe`, with
    /// `extra` fields; returns the run id.
    pub async fn submit(&self, pipe: &Pipe, stage: usize, solution: &str, extra: Value) -> Uuid {
        self.submit_as(&self.maker, pipe, stage, solution, extra)
            .await
    }

    pub async fn submit_as(
        &self,
        who: &Actor,
        pipe: &Pipe,
        stage: usize,
        solution: &str,
        extra: Value,
    ) -> Uuid {
        let (status, run) = self
            .deploy(who, request(pipe, stage, solution, extra))
            .await;
        assert_eq!(status, 202, "{} deploying {solution}: {run}", who.subject);
        assert_eq!(run["requested_by"], who.subject.as_str());
        id_of(&run)
    }

    /// POST /api/v1/deployments/{id}/{action} as `who`.
    pub async fn act(
        &self,
        who: &Actor,
        id: Uuid,
        action: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = who
            .http
            .post(self.url(&format!("/api/v1/deployments/{id}/{action}")));
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request).await
    }

    /// Waits until the run is in `state`; fails at once if it ends in
    /// another.
    pub async fn wait_for(&self, id: Uuid, state: &str) -> Value {
        let deadline = Instant::now() + RUN_DEADLINE;
        loop {
            let run = self.cluster.run(id).await.unwrap();
            let now = run["state"].as_str().unwrap_or_default().to_owned();
            if now == state {
                return run;
            }
            if matches!(now.as_str(), "succeeded" | "failed" | "canceled") {
                panic!(
                    "run {id} ended `{now}` while waiting for `{state}`: {run:#}\n{}",
                    self.cluster.log_hint()
                );
            }
            assert!(
                Instant::now() < deadline,
                "run {id} still `{now}`, not `{state}`, after {RUN_DEADLINE:?}: {run:#}\n{}",
                self.cluster.log_hint()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the run's end; it must be `state`.
    pub async fn wait_end(&self, id: Uuid, state: &str) -> Value {
        let run = match self.cluster.wait_terminal(id, RUN_DEADLINE).await {
            Ok(run) => run,
            Err(e) => panic!("{e:#}\nhistory: {:#?}", self.history(id).await),
        };
        assert_eq!(
            run["state"],
            state,
            "run {id}: {run:#}\nhistory: {:#?}\n{}",
            self.cluster.history(id).await.unwrap(),
            self.cluster.log_hint()
        );
        run
    }

    pub async fn history(&self, id: Uuid) -> Vec<Value> {
        self.cluster.history(id).await.unwrap()
    }

    /// SIGTERM every service (each must exit 0), then stop the simulator.
    /// No service ever wrote the environments' token to its log.
    pub async fn stop(self) {
        let processes = std::iter::once(&self.cluster.gateway).chain(&self.cluster.workers);
        for process in processes {
            let log = std::fs::read_to_string(&process.log).unwrap_or_default();
            assert!(
                !log.contains(SIM_TOKEN),
                "{} logged the environment token",
                process.name
            );
        }
        self.cluster.shutdown().await.unwrap();
        self.sim.shutdown().await.unwrap();
    }
}

pub async fn actor(cluster: &Cluster, subject: &str, roles: &[&str]) -> Actor {
    let (status, created) = send(
        cluster
            .http
            .post(format!("{}/api/v1/tokens", cluster.gateway_url))
            .json(&json!({"name": format!("{subject}-token"), "subject": subject, "roles": roles})),
    )
    .await;
    assert_eq!(status, 201, "token for {subject}: {created}");
    Actor {
        subject: subject.into(),
        http: slipway_testkit::http_client_with_token(created["token"].as_str().unwrap()).unwrap(),
    }
}

/// A deployment request through a pipeline's stage, from dev.
pub fn request(pipe: &Pipe, stage: usize, solution: &str, extra: Value) -> Value {
    let mut body = json!({
        "solution_name": solution,
        "pipeline_id": pipe.id,
        "stage_id": pipe.stages[stage],
        "source_environment": "dev",
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}
