//! The gateway's REST API as the commands use it: where the gateway is and
//! which token to send (flags, environment, profile), JSON in and out, and
//! every failure turned into one line that names the problem and the fix.
//! Names are resolved to ids here, client-side, through the list endpoints,
//! since the API addresses everything by id.

use std::fmt;
use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::Method;
use serde_json::Value;

/// Where the gateway is and the token to present; global, so it may follow
/// any subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArg {
    /// The gateway's base URL [default: the profile's, else http://127.0.0.1:8080].
    #[arg(long, env = "SLIPWAY_URL", global = true, display_order = 900)]
    gateway: Option<String>,
    /// A bearer token for the gateway [default: the profile's].
    #[arg(
        long,
        env = "SLIPWAY_TOKEN",
        hide_env_values = true,
        global = true,
        display_order = 901
    )]
    token: Option<String>,
    /// Set from the global `--output json`.
    #[arg(skip)]
    pub json: bool,
}

/// A command-line mistake found after parsing (e.g. a flag missing given
/// the others); `main` exits 2 for it, like for clap's own.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Fails with a [`UsageError`].
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::client::UsageError(format!($($arg)*))))
    };
}
pub(crate) use usage;

/// A non-2xx answer of the gateway.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: reqwest::StatusCode,
    /// The gateway's `error`, or the body as text.
    pub message: String,
    /// The gateway's `fields[].field` (422).
    pub fields: Vec<String>,
    /// No token was sent at all.
    no_token: bool,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status == reqwest::StatusCode::UNAUTHORIZED {
            let what = if self.no_token {
                "the gateway needs a token"
            } else {
                "the gateway refused the token"
            };
            return write!(
                f,
                "{what} ({}); set one with `slipway profile set --token` or SLIPWAY_TOKEN",
                self.message
            );
        }
        write!(f, "the gateway answered {}: {}", self.status, self.message)
    }
}

impl std::error::Error for ApiFailure {}

/// A connection to the gateway.
#[derive(Debug)]
pub struct Client {
    pub base: String,
    token: Option<String>,
    http: reqwest::Client,
    /// Print JSON rather than text.
    pub json: bool,
}

impl Client {
    /// Flags and environment first, then the profile, then the default.
    pub fn new(arg: &GatewayArg) -> anyhow::Result<Client> {
        // reqwest is built without a default TLS provider; ring is the
        // workspace's. A second install attempt is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let profile = crate::profile::load()?;
        let base = arg
            .gateway
            .clone()
            .or(profile.url)
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let base = base.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base).with_context(|| {
            format!(
                "`{base}` is not a URL; give the gateway's, e.g. --gateway http://127.0.0.1:8080"
            )
        })?;
        Ok(Client {
            base,
            token: arg
                .token
                .clone()
                .or(profile.token)
                .filter(|t| !t.trim().is_empty()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .context("cannot build an HTTP client")?,
            json: arg.json,
        })
    }

    /// The URL of `segments` under the gateway, each percent-encoded (names
    /// may hold spaces or slashes).
    pub fn url(&self, segments: &[&str]) -> anyhow::Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&self.base)
            .with_context(|| format!("`{}` is not a URL", self.base))?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("`{}` cannot be a base URL", self.base))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Sends a request; a gateway that cannot be reached becomes one line
    /// naming it. `timeout` overrides the client's (downloads take longer).
    async fn request(
        &self,
        method: Method,
        url: reqwest::Url,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut req = self.http.request(method, url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        if let Some(timeout) = timeout {
            req = req.timeout(timeout);
        }
        match req.send().await {
            Ok(resp) => Ok(resp),
            Err(err) => {
                // The innermost cause says what happened (refused, timed
                // out, no such host); the layers above repeat the URL.
                let mut root: &dyn std::error::Error = &err;
                while let Some(source) = root.source() {
                    root = source;
                }
                bail!(
                    "cannot reach the gateway at {} ({root}); is it running (`slipway dev`)?",
                    self.base
                );
            }
        }
    }

    /// The whole body of an answer.
    async fn read(&self, resp: reqwest::Response) -> anyhow::Result<bytes::Bytes> {
        resp.bytes()
            .await
            .with_context(|| format!("the gateway at {} broke off its answer", self.base))
    }

    /// Sends a request; a non-2xx answer becomes an [`ApiFailure`]. An empty
    /// answer (204) is `null`.
    pub async fn send(
        &self,
        method: Method,
        url: reqwest::Url,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let resp = self.request(method, url, body, None).await?;
        let status = resp.status();
        let bytes = self.read(resp).await?;
        if !status.is_success() {
            return Err(self.failure(status, &bytes).into());
        }
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(v),
            Err(_) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Value::Null),
            Err(_) => bail!(
                "the gateway at {} answered {status} with something other than JSON; is that URL a Slipway gateway?",
                self.base
            ),
        }
    }

    /// GETs a file (not JSON): its bytes, and the name the gateway suggests
    /// for it (`Content-Disposition`), if any.
    pub async fn download(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<(bytes::Bytes, Option<String>)> {
        let mut url = self.url(segments)?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        // Artifacts can be large; the 30 s of JSON calls is too short.
        let resp = self
            .request(Method::GET, url, None, Some(Duration::from_secs(600)))
            .await?;
        let status = resp.status();
        let name = resp
            .headers()
            .get(reqwest::header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(attachment_name);
        let bytes = self.read(resp).await?;
        if !status.is_success() {
            return Err(self.failure(status, &bytes).into());
        }
        Ok((bytes, name))
    }

    /// A non-2xx answer as an [`ApiFailure`]: the gateway's `error` and
    /// `fields`, else its text, shortened.
    fn failure(&self, status: reqwest::StatusCode, bytes: &[u8]) -> ApiFailure {
        let body: Option<Value> = serde_json::from_slice(bytes).ok();
        let (message, fields) = match &body {
            Some(b) if b["error"].is_string() => (
                b["error"].as_str().unwrap_or_default().to_owned(),
                b["fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["field"].as_str().map(str::to_owned))
                    .collect(),
            ),
            Some(b) => (b.to_string(), Vec::new()),
            None => {
                let text = String::from_utf8_lossy(bytes);
                let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let text: String = text.chars().take(200).collect();
                let text = if text.is_empty() {
                    status.canonical_reason().unwrap_or("no message").to_owned()
                } else {
                    text
                };
                (text, Vec::new())
            }
        };
        ApiFailure {
            status,
            message,
            fields,
            no_token: self.token.is_none(),
        }
    }

    pub async fn get(&self, segments: &[&str]) -> anyhow::Result<Value> {
        self.send(Method::GET, self.url(segments)?, None).await
    }

    /// GET with query parameters.
    pub async fn get_query(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let mut url = self.url(segments)?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        self.send(Method::GET, url, None).await
    }

    pub async fn post(&self, segments: &[&str], body: &Value) -> anyhow::Result<Value> {
        self.send(Method::POST, self.url(segments)?, Some(body))
            .await
    }

    pub async fn patch(&self, segments: &[&str], body: &Value) -> anyhow::Result<Value> {
        self.send(Method::PATCH, self.url(segments)?, Some(body))
            .await
    }

    pub async fn put(&self, segments: &[&str], body: &Value) -> anyhow::Result<Value> {
        self.send(Method::PUT, self.url(segments)?, Some(body))
            .await
    }

    pub async fn delete(&self, segments: &[&str]) -> anyhow::Result<Value> {
        self.send(Method::DELETE, self.url(segments)?, None).await
    }

    /// The pipelines the caller may see (admins: all).
    pub async fn pipelines(&self) -> anyhow::Result<Vec<Value>> {
        list(self.get(&["api", "v1", "pipelines"]).await?)
    }

    /// Every environment (admins only).
    pub async fn environments(&self) -> anyhow::Result<Vec<Value>> {
        list(self.get(&["api", "v1", "environments"]).await?)
    }

    /// Prints `value` as JSON, or `text` for people.
    pub fn print(&self, value: &Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value:#}");
        } else {
            let text = text();
            if !text.is_empty() {
                println!("{}", text.trim_end_matches('\n'));
            }
        }
    }
}

fn list(value: Value) -> anyhow::Result<Vec<Value>> {
    match value {
        Value::Array(items) => Ok(items),
        other => bail!("the gateway answered {other} where a list was expected"),
    }
}

/// The file name of a `Content-Disposition: attachment; filename="..."`,
/// without any folder part (never trusted as a path).
fn attachment_name(header: &str) -> Option<String> {
    let name = header
        .split(';')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("filename="))?
        .trim_matches('"');
    let name = name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_owned())
}

/// Adds `hint` to the gateway's 404 (an id that does not exist, or that
/// the caller may not see: the gateway does not tell them apart).
pub fn hint_not_found(err: anyhow::Error, hint: &str) -> anyhow::Error {
    match err.downcast_ref::<ApiFailure>() {
        Some(f) if f.status == reqwest::StatusCode::NOT_FOUND => {
            let message = format!("{err}; {hint}");
            anyhow::anyhow!(message)
        }
        _ => err,
    }
}

/// A clap value parser for ids: a uuid, else a message naming where ids
/// are listed (`hint`).
pub fn id_arg(value: &str, what: &str, hint: &str) -> Result<String, String> {
    let value = value.trim();
    if looks_like_id(value) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{value}` is not {what} id (a uuid like 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080); {hint}"
        ))
    }
}

/// A single-threaded runtime: the commands make one request at a time.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `value[key]` as text, `-` when absent.
pub fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("-")
}

/// Whether `s` has the shape of a uuid (ids are given as uuids).
pub fn looks_like_id(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The one item of `items` whose id is `key`, or else whose name is `key`
/// (exactly, then ignoring case). `what` names the kind of item and `hint`
/// the command that lists them, for the error.
pub fn find_one<'a>(
    items: &'a [Value],
    what: &str,
    key: &str,
    hint: &str,
) -> anyhow::Result<&'a Value> {
    if let Some(found) = items.iter().find(|i| {
        i["id"]
            .as_str()
            .is_some_and(|id| id.eq_ignore_ascii_case(key))
    }) {
        return Ok(found);
    }
    let exact: Vec<&Value> = items.iter().filter(|i| i["name"] == key).collect();
    let matches = if exact.is_empty() {
        items
            .iter()
            .filter(|i| {
                i["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(key))
            })
            .collect()
    } else {
        exact
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!("no {what} {key}; {hint}"),
        several => {
            let ids: Vec<&str> = several.iter().map(|i| text(i, "id")).collect();
            bail!(
                "several {what}s are named {key} (ids {}); give the id instead",
                ids.join(", ")
            )
        }
    }
}

/// `value[key]`, an id, as text; an error when the gateway's answer lacks it.
pub fn id_of(value: &Value) -> anyhow::Result<&str> {
    value["id"]
        .as_str()
        .with_context(|| format!("the gateway's answer has no id: {value}"))
}

/// Left-aligned columns under a header; two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_have_the_uuid_shape() {
        assert!(looks_like_id("01a21c8b-dd04-709d-9f1e-a8b3ae2a5080"));
        assert!(!looks_like_id("prod"));
        assert!(!looks_like_id("01a21c8b-dd04-709d-9f1e-a8b3ae2a508g"));
        assert!(!looks_like_id("01a21c8bxdd04-709d-9f1e-a8b3ae2a5080"));
    }

    #[test]
    fn find_one_matches_ids_then_names_and_refuses_ambiguity() {
        let items = vec![
            json!({"id": "a", "name": "dev"}),
            json!({"id": "b", "name": "Test"}),
            json!({"id": "c", "name": "twin"}),
            json!({"id": "d", "name": "twin"}),
        ];
        assert_eq!(
            find_one(&items, "env", "b", "")
                .map(|v| v["name"].clone())
                .ok(),
            Some(json!("Test"))
        );
        assert_eq!(
            find_one(&items, "env", "test", "")
                .map(|v| v["id"].clone())
                .ok(),
            Some(json!("b"))
        );
        let err = find_one(&items, "environment", "prod", "list them").unwrap_err();
        assert_eq!(err.to_string(), "no environment prod; list them");
        let err = find_one(&items, "environment", "twin", "").unwrap_err();
        assert!(err.to_string().contains("ids c, d"), "{err}");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["NAME", "KIND"],
            &[
                vec!["dev".into(), "development".into()],
                vec!["production".into(), "target".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME        KIND\ndev         development\nproduction  target"
        );
    }

    #[test]
    fn attachment_names_are_file_names_only() {
        assert_eq!(
            attachment_name("attachment; filename=\"Contoso_1_0_0_1_managed.zip\"").as_deref(),
            Some("Contoso_1_0_0_1_managed.zip")
        );
        assert_eq!(
            attachment_name("attachment; filename=\"../../etc/passwd\"").as_deref(),
            Some("passwd")
        );
        assert_eq!(attachment_name("attachment; filename=\"..\""), None);
        assert_eq!(attachment_name("inline"), None);
    }

    #[test]
    fn unauthorized_names_the_fix() {
        let failure = ApiFailure {
            status: reqwest::StatusCode::UNAUTHORIZED,
            message: "this API token is unknown".into(),
            fields: vec![],
            no_token: false,
        };
        assert_eq!(
            failure.to_string(),
            "the gateway refused the token (this API token is unknown); set one with `slipway profile set --token` or SLIPWAY_TOKEN"
        );
    }
}
