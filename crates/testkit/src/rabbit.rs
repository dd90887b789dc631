//! A fresh RabbitMQ vhost per test on the real broker (127.0.0.1:5672, with
//! the management API on 127.0.0.1:15672, guest/guest).
//!
//! Each [`RabbitVhost`] is uniquely named (`slipway-test-<uuid>`), so tests
//! that declare the same exchange and queue names run side by side. The vhost
//! and everything in it is deleted on [`RabbitVhost::delete`] or on drop.

use anyhow::{Context, bail};
use serde_json::Value;

const AMQP_ADDR: &str = "127.0.0.1:5672";
const MANAGEMENT: &str = "http://127.0.0.1:15672";
const USER: &str = "guest";
const PASSWORD: &str = "guest";
const HOW_TO_START: &str = "RabbitMQ is not reachable at 127.0.0.1:5672 / management API at \
127.0.0.1:15672: start it with `rabbitmq-server -detached` and enable the management plugin \
with `rabbitmq-plugins enable rabbitmq_management`";

/// A vhost created for one test; deleted when dropped.
#[derive(Debug)]
pub struct RabbitVhost {
    /// The vhost's name, `slipway-test-<uuid>`.
    pub name: String,
    client: reqwest::Client,
    deleted: bool,
}

/// Creates a uniquely named vhost and grants `guest` full permissions on it.
pub async fn fresh_vhost() -> anyhow::Result<RabbitVhost> {
    tokio::net::TcpStream::connect(AMQP_ADDR)
        .await
        .context(HOW_TO_START)?;
    let client = crate::http_client()?;
    let name = format!("slipway-test-{}", uuid::Uuid::new_v4());
    let vhost = RabbitVhost {
        name,
        client,
        deleted: false,
    };
    vhost
        .management(reqwest::Method::PUT, &["vhosts", &vhost.name])
        .await?;
    let permissions = serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"});
    let url = api_url(&["permissions", &vhost.name, USER])?;
    send(
        vhost
            .client
            .put(url)
            .basic_auth(USER, Some(PASSWORD))
            .json(&permissions),
    )
    .await?;
    Ok(vhost)
}

impl RabbitVhost {
    /// The AMQP URL of this vhost, for `BusConfig::url` or `lapin::Connection::connect`.
    pub fn amqp_url(&self) -> String {
        format!("amqp://{USER}:{PASSWORD}@{AMQP_ADDR}/{}", self.name)
    }

    /// Force-closes every client connection to this vhost, as an operator or
    /// a broker restart would; returns the names of those it closed. The management
    /// API lists a new connection only after a moment, so this waits up to
    /// 10 s for at least one to show up.
    pub async fn close_all_connections(&self) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for _ in 0..100 {
            names = self.connection_names().await?;
            if !names.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        for name in &names {
            self.management(reqwest::Method::DELETE, &["connections", name])
                .await?;
        }
        Ok(names)
    }

    /// Names of the client connections to this vhost, as the management API lists them.
    pub async fn connection_names(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .connections()
            .await?
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect())
    }

    /// The client connections to this vhost with what the management API
    /// says of each (`name`, `frame_max`, `channels`...).
    pub async fn connections(&self) -> anyhow::Result<Vec<Value>> {
        let listed = self
            .management(reqwest::Method::GET, &["vhosts", &self.name, "connections"])
            .await?;
        Ok(listed.as_array().cloned().unwrap_or_default())
    }

    /// Deletes the vhost now (also done on drop).
    pub async fn delete(mut self) -> anyhow::Result<()> {
        self.deleted = true;
        self.management(reqwest::Method::DELETE, &["vhosts", &self.name])
            .await
            .map(drop)
    }

    async fn management(&self, method: reqwest::Method, path: &[&str]) -> anyhow::Result<Value> {
        let url = api_url(path)?;
        send(
            self.client
                .request(method, url)
                .basic_auth(USER, Some(PASSWORD)),
        )
        .await
    }
}

impl Drop for RabbitVhost {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let name = self.name.clone();
        // Drop cannot be async and may run inside a runtime: delete from a
        // short-lived thread with its own runtime.
        let joined = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let url = api_url(&["vhosts", &name])?;
                send(
                    crate::http_client()?
                        .delete(url)
                        .basic_auth(USER, Some(PASSWORD)),
                )
                .await
                .map(drop)
            })
        })
        .join();
        if let Ok(Err(err)) = joined {
            eprintln!("could not delete test vhost {}: {err:#}", self.name);
        }
    }
}

/// `/api/a/b/c` with each segment percent-encoded (connection names contain
/// spaces and `->`).
fn api_url(segments: &[&str]) -> anyhow::Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(MANAGEMENT)?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("management url cannot have a path"))?
        .push("api")
        .extend(segments);
    Ok(url)
}

async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let response = request.send().await.context(HOW_TO_START)?;
    let status = response.status();
    let body = response.text().await.context(HOW_TO_START)?;
    if !status.is_success() {
        bail!("rabbitmq management api answered {status}: {body}");
    }
    if body.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&body).context("rabbitmq management api answered with invalid json")
}
