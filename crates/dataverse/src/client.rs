//! The client: one environment, one `reqwest::Client`, one token cache.

use std::borrow::Cow;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use uuid::Uuid;

use crate::DataverseError;
use crate::auth::{Credentials, TokenSource};
use crate::types::*;

/// How transient failures (429, 5xx, timeouts, refused connections) are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 turns retrying off.
    pub max_retries: u32,
    /// First backoff delay; doubled on every retry.
    pub base_delay: Duration,
    /// Upper bound of one backoff delay.
    pub max_delay: Duration,
    /// Longest `Retry-After` the client waits; a longer one fails the call
    /// with [`DataverseError::Throttled`] so the caller can reschedule.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (0-based).
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        self.base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay)
    }
}

/// Everything needed to talk to one environment.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The environment URL, e.g. `https://contoso.crm4.dynamics.com` or a
    /// simulator's `http://127.0.0.1:PORT/dev`. The Web API lives under
    /// `<url>/api/data/v9.2/`.
    pub environment_url: String,
    /// How to get a bearer token.
    pub credentials: Credentials,
    /// Timeout of one HTTP request (not of a whole import: imports are polled).
    pub request_timeout: Duration,
    /// Retry of transient failures.
    pub retry: RetryPolicy,
    /// Pause between two polls of an asynchronous operation.
    pub poll_interval: Duration,
    /// Give up polling after this long; `None` waits as long as it takes
    /// (imports of hours happen).
    pub poll_timeout: Option<Duration>,
    /// Polls in a row that may fail transiently (after their own retries)
    /// before the wait gives up: a long import outlives short outages.
    pub poll_failures_tolerated: u32,
}

impl ClientConfig {
    /// A configuration with the defaults: 120 s request timeout, 5 retries,
    /// polling every 5 s without limit, 5 failed polls in a row tolerated.
    pub fn new(environment_url: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            environment_url: environment_url.into(),
            credentials,
            request_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            poll_interval: Duration::from_secs(5),
            poll_timeout: None,
            poll_failures_tolerated: 5,
        }
    }
}

/// A Dataverse Web API v9.2 client for one environment. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// Whom every request acts for ([`Client::acting_for`]); `None`: the
    /// credentials' own user.
    caller: Option<CallerId>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    api_base: String,
    auth: TokenSource,
    config: ClientConfig,
}

static CRYPTO_PROVIDER: Once = Once::new();

/// Installs rustls' ring provider once per process (reqwest is built without
/// one). Another provider installed first is fine: that one is used.
fn install_crypto_provider() {
    CRYPTO_PROVIDER.call_once(|| {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Escapes a string for an OData literal (`'` doubled).
fn odata_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[derive(Deserialize)]
struct Collection<T> {
    value: Vec<T>,
}

impl Client {
    /// Builds a client. Does no network I/O: the first call fetches a token.
    pub fn new(config: ClientConfig) -> Result<Self, DataverseError> {
        install_crypto_provider();
        let url = config.environment_url.trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(DataverseError::Config(format!(
                "environment url {url:?} must start with https:// (or http:// for a simulator)"
            )));
        }
        if let Credentials::ClientSecret {
            client_id,
            client_secret,
            ..
        } = &config.credentials
            && (client_id.is_empty() || client_secret.is_empty())
        {
            return Err(DataverseError::Config(
                "client id and client secret must not be empty".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|e| DataverseError::Config(format!("cannot build the http client: {e}")))?;
        let auth = TokenSource::new(config.credentials.clone(), format!("{url}/.default"));
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                api_base: format!("{url}/api/data/v9.2/"),
                auth,
                config,
            }),
            caller: None,
        })
    }

    /// The same client (same token cache) with every request made on
    /// behalf of `caller` (Dataverse impersonation: the `CallerObjectId` or
    /// `MSCRMCallerID` header).
    pub fn acting_for(&self, caller: CallerId) -> Client {
        Client {
            inner: self.inner.clone(),
            caller: Some(caller),
        }
    }

    /// Whom this client's requests act for, if not its credentials' user.
    pub fn caller(&self) -> Option<CallerId> {
        self.caller
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// `WhoAmI`: proves the credentials work against this environment.
    pub async fn who_am_i(&self) -> Result<WhoAmI, DataverseError> {
        self.get_json("WhoAmI", &[]).await
    }

    /// Visible solutions installed in the environment.
    pub async fn solutions(&self) -> Result<Vec<InstalledSolution>, DataverseError> {
        self.get_collection(
            "solutions",
            &[
                (
                    "$select",
                    "solutionid,uniquename,friendlyname,version,ismanaged",
                ),
                ("$filter", "isvisible eq true"),
            ],
        )
        .await
    }

    /// [`Client::solutions`] with each one's publisher (for pick lists).
    pub async fn solutions_with_publishers(&self) -> Result<Vec<SolutionListing>, DataverseError> {
        self.get_collection(
            "solutions",
            &[
                (
                    "$select",
                    "solutionid,uniquename,friendlyname,version,ismanaged",
                ),
                ("$filter", "isvisible eq true"),
                ("$expand", "publisherid($select=uniquename,friendlyname)"),
            ],
        )
        .await
    }

    /// The installed solution with this unique name, if any.
    pub async fn solution(
        &self,
        unique_name: &str,
    ) -> Result<Option<InstalledSolution>, DataverseError> {
        let filter = format!("uniquename eq {}", odata_literal(unique_name));
        let mut rows: Vec<InstalledSolution> = self
            .get_collection(
                "solutions",
                &[
                    (
                        "$select",
                        "solutionid,uniquename,friendlyname,version,ismanaged",
                    ),
                    ("$filter", &filter),
                ],
            )
            .await?;
        Ok(rows.pop())
    }

    /// Sets the version of the unmanaged solution `solution_id`
    /// (`PATCH solutions(<id>)` with `{"version": ...}`; `version` is a
    /// writable column of the solution table). Pipelines do this in the
    /// development environment after exporting a new version, so the next
    /// export starts from it. Only an update: an unknown id is an error,
    /// never a new row.
    pub async fn set_solution_version(
        &self,
        solution_id: Uuid,
        version: &str,
    ) -> Result<(), DataverseError> {
        let body = serde_json::to_vec(&json!({ "version": version }))
            .map_err(|e| DataverseError::Config(e.to_string()))?;
        self.send(
            Method::PATCH,
            &format!("solutions({solution_id})"),
            &[],
            Some(Bytes::from(body)),
        )
        .await?;
        Ok(())
    }

    /// `ExportSolution`: the zip of an installed solution, managed or
    /// unmanaged. The base64 answer is decoded straight into one buffer.
    pub async fn export_solution(
        &self,
        solution_name: &str,
        managed: bool,
    ) -> Result<Bytes, DataverseError> {
        #[derive(Deserialize)]
        struct Exported<'a> {
            #[serde(rename = "ExportSolutionFile", borrow)]
            file: Cow<'a, str>,
        }
        let body = serde_json::to_vec(&json!({"SolutionName": solution_name, "Managed": managed}))
            .map_err(|e| DataverseError::Config(e.to_string()))?;
        let raw = self
            .send(Method::POST, "ExportSolution", &[], Some(Bytes::from(body)))
            .await?;
        let decode_err = |message: String| DataverseError::Decode {
            what: "ExportSolution".into(),
            message,
        };
        let parsed: Exported<'_> =
            serde_json::from_slice(&raw).map_err(|e| decode_err(e.to_string()))?;
        let mut zip = Vec::with_capacity(base64::decoded_len_estimate(parsed.file.len()));
        STANDARD
            .decode_vec(parsed.file.as_bytes(), &mut zip)
            .map_err(|e| decode_err(format!("ExportSolutionFile is not base64: {e}")))?;
        Ok(Bytes::from(zip))
    }

    /// `StageSolution`: validates a zip against the environment without
    /// installing it (missing dependencies, version and managed conflicts).
    pub async fn stage_solution(
        &self,
        zip: &Bytes,
    ) -> Result<StageSolutionResults, DataverseError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Staged {
            stage_solution_results: StageSolutionResults,
        }
        let body = body_with_file(zip, serde_json::Map::new())?;
        let raw = self
            .send(Method::POST, "StageSolution", &[], Some(body))
            .await?;
        let staged: Staged = decode("StageSolution", &raw)?;
        Ok(staged.stage_solution_results)
    }

    /// `ImportSolutionAsync`: starts an import and returns at once. Use
    /// [`Client::wait_for_async_operation`] or [`Client::import_solution`].
    pub async fn import_solution_async(
        &self,
        request: &ImportRequest,
    ) -> Result<ImportStarted, DataverseError> {
        let job_id = request.import_job_id.unwrap_or_else(Uuid::new_v4);
        let mut rest = serde_json::Map::new();
        rest.insert(
            "OverwriteUnmanagedCustomizations".into(),
            request.overwrite_unmanaged_customizations.into(),
        );
        rest.insert("PublishWorkflows".into(), request.publish_workflows.into());
        rest.insert("HoldingSolution".into(), request.holding_solution.into());
        rest.insert("ImportJobId".into(), job_id.to_string().into());
        rest.insert(
            "ComponentParameters".into(),
            serde_json::to_value(&request.component_parameters)
                .map_err(|e| DataverseError::Config(e.to_string()))?,
        );
        let body = body_with_file(&request.customization_file, rest)?;
        let raw = self
            .send(Method::POST, "ImportSolutionAsync", &[], Some(body))
            .await?;
        decode("ImportSolutionAsync", &raw)
    }

    /// One read of `asyncoperations(<id>)`.
    pub async fn async_operation(&self, id: Uuid) -> Result<AsyncOperation, DataverseError> {
        self.get_json(
            &format!("asyncoperations({id})"),
            &[(
                "$select",
                "asyncoperationid,name,statecode,statuscode,message,friendlymessage",
            )],
        )
        .await
    }

    /// One read of `importjobs(<id>)`, the import job an `ImportSolutionAsync`
    /// given `ImportJobId` = `id` runs: how far the import has got. `None`
    /// when the environment has no such job (404), e.g. before the import
    /// has created it.
    pub async fn import_job(&self, id: Uuid) -> Result<Option<ImportJob>, DataverseError> {
        match self
            .get_json(
                &format!("importjobs({id})"),
                &[("$select", "progress,startedon,completedon,solutionname")],
            )
            .await
        {
            Ok(job) => Ok(Some(job)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Polls an asynchronous operation until it completes. Succeeded: the
    /// final record. Failed or canceled: [`DataverseError::AsyncOperationFailed`]
    /// with Dataverse's message.
    pub async fn wait_for_async_operation(
        &self,
        id: Uuid,
    ) -> Result<AsyncOperation, DataverseError> {
        let started = Instant::now();
        let mut failed_polls = 0u32;
        let mut last_status = AsyncStatus::InProgress;
        loop {
            let op = match self.async_operation(id).await {
                Ok(op) => {
                    failed_polls = 0;
                    last_status = op.statuscode;
                    Some(op)
                }
                Err(e)
                    if e.is_transient()
                        && failed_polls < self.inner.config.poll_failures_tolerated =>
                {
                    failed_polls += 1;
                    tracing::warn!(%id, error = %e, failed_polls, "polling failed; polling on");
                    None
                }
                Err(e) => return Err(e),
            };
            if let Some(op) = op
                && op.is_completed()
            {
                return match op.statuscode {
                    AsyncStatus::Succeeded => Ok(op),
                    status => Err(DataverseError::AsyncOperationFailed {
                        id,
                        status,
                        message: op.error_message(),
                    }),
                };
            }
            if let Some(limit) = self.inner.config.poll_timeout
                && started.elapsed() >= limit
            {
                return Err(DataverseError::AsyncOperationTimeout {
                    id,
                    status: last_status,
                    waited_secs: started.elapsed().as_secs(),
                });
            }
            tracing::debug!(%id, status = %last_status, "asynchronous operation still running");
            tokio::time::sleep(self.inner.config.poll_interval).await;
        }
    }

    /// `ImportSolutionAsync`, then polls it to its end.
    pub async fn import_solution(
        &self,
        request: &ImportRequest,
    ) -> Result<AsyncOperation, DataverseError> {
        let started = self.import_solution_async(request).await?;
        self.wait_for_async_operation(started.async_operation_id)
            .await
    }

    /// `DeleteAndPromote`: replaces an installed managed solution with its
    /// holding solution (`<name>_Upgrade`, imported with
    /// [`ImportRequest::holding_solution`]), deleting the components the new
    /// version dropped. Returns the promoted solution's id.
    pub async fn delete_and_promote(&self, unique_name: &str) -> Result<Uuid, DataverseError> {
        #[derive(Deserialize)]
        struct Promoted {
            #[serde(rename = "SolutionId")]
            solution_id: Uuid,
        }
        let body = serde_json::to_vec(&json!({ "UniqueName": unique_name }))
            .map_err(|e| DataverseError::Config(e.to_string()))?;
        let raw = self
            .send(
                Method::POST,
                "DeleteAndPromote",
                &[],
                Some(Bytes::from(body)),
            )
            .await?;
        let promoted: Promoted = decode("DeleteAndPromote", &raw)?;
        Ok(promoted.solution_id)
    }

    /// All rows of `environmentvariabledefinitions`.
    pub async fn environment_variable_definitions(
        &self,
    ) -> Result<Vec<EnvironmentVariableDefinition>, DataverseError> {
        self.get_collection(
            "environmentvariabledefinitions",
            &[(
                "$select",
                "environmentvariabledefinitionid,schemaname,displayname,type,defaultvalue,isrequired",
            )],
        )
        .await
    }

    /// All rows of `environmentvariablevalues`.
    pub async fn environment_variable_values(
        &self,
    ) -> Result<Vec<EnvironmentVariableValue>, DataverseError> {
        self.get_collection(
            "environmentvariablevalues",
            &[(
                "$select",
                "environmentvariablevalueid,schemaname,value,_environmentvariabledefinitionid_value",
            )],
        )
        .await
    }

    /// All rows of `connectionreferences`.
    pub async fn connection_references(
        &self,
    ) -> Result<Vec<ConnectionReferenceRecord>, DataverseError> {
        self.get_collection(
            "connectionreferences",
            &[(
                "$select",
                "connectionreferenceid,connectionreferencelogicalname,connectionreferencedisplayname,connectorid,connectionid",
            )],
        )
        .await
    }

    /// Connections available in the environment (entity set `connections`,
    /// Slipway's model of the Power Apps connections list; see crate docs).
    pub async fn connections(&self) -> Result<Vec<Connection>, DataverseError> {
        self.get_collection("connections", &[]).await
    }

    /// The user whose `domainname` (user principal name) is `domain_name`.
    pub async fn system_user_by_domain_name(
        &self,
        domain_name: &str,
    ) -> Result<Option<SystemUser>, DataverseError> {
        let filter = format!("domainname eq {}", odata_literal(domain_name));
        self.system_user(&filter).await
    }

    /// The application user of the application (client) id `application_id`.
    pub async fn system_user_by_application_id(
        &self,
        application_id: Uuid,
    ) -> Result<Option<SystemUser>, DataverseError> {
        self.system_user(&format!("applicationid eq {application_id}"))
            .await
    }

    async fn system_user(&self, filter: &str) -> Result<Option<SystemUser>, DataverseError> {
        let mut rows: Vec<SystemUser> = self
            .get_collection(
                "systemusers",
                &[
                    (
                        "$select",
                        "systemuserid,domainname,fullname,azureactivedirectoryobjectid,applicationid,isdisabled",
                    ),
                    ("$filter", filter),
                ],
            )
            .await?;
        Ok(rows.pop())
    }

    /// Whom to act for to act as `user`: a Microsoft Entra object id is
    /// used as it is (`CallerObjectId`, no lookup); anything else is taken
    /// as a user principal name and looked up in `systemusers` by
    /// `domainname` (`MSCRMCallerID` with the row's id). A user that is not
    /// in the environment or is disabled is [`DataverseError::UnknownCaller`].
    pub async fn caller_for_user(&self, user: &str) -> Result<CallerId, DataverseError> {
        let user = user.trim();
        if let Ok(object_id) = Uuid::parse_str(user) {
            return Ok(CallerId::ObjectId(object_id));
        }
        let row = self.system_user_by_domain_name(user).await?;
        usable_caller(row, || format!("user {user}"))
    }

    /// Whom to act for to act as the application user of `application_id`
    /// (an application (client) id): its `systemusers` row, found by
    /// `applicationid` (`MSCRMCallerID`). Not a uuid, not in the environment
    /// or disabled: [`DataverseError::UnknownCaller`].
    pub async fn caller_for_application(
        &self,
        application_id: &str,
    ) -> Result<CallerId, DataverseError> {
        let application_id = application_id.trim();
        let Ok(id) = Uuid::parse_str(application_id) else {
            return Err(DataverseError::UnknownCaller(format!(
                "`{application_id}` is not an application (client) id; give the service principal's application id, a uuid"
            )));
        };
        let row = self.system_user_by_application_id(id).await?;
        usable_caller(row, || format!("the application user of application {id}"))
    }

    /// The components of an installed solution (`msdyn_solutioncomponentsummaries`
    /// filtered by `msdyn_solutionid`), every page. Unlike `solutioncomponents`,
    /// whose rows name components only by object id, these rows carry schema
    /// names, which is how solution packages name most components.
    pub async fn solution_components(
        &self,
        solution_id: Uuid,
    ) -> Result<Vec<SolutionComponentSummary>, DataverseError> {
        #[derive(Deserialize)]
        struct Page {
            value: Vec<SolutionComponentSummary>,
            #[serde(rename = "@odata.nextLink", default)]
            next_link: Option<String>,
        }
        /// Bounds a server that keeps answering with a next page.
        const MAX_PAGES: usize = 10_000;
        const WHAT: &str = "msdyn_solutioncomponentsummaries";
        let filter = format!("msdyn_solutionid eq {solution_id}");
        let mut raw = self
            .send(
                Method::GET,
                WHAT,
                &[
                    (
                        "$select",
                        "msdyn_componenttype,msdyn_componenttypename,msdyn_schemaname,msdyn_objectid,msdyn_name",
                    ),
                    ("$filter", &filter),
                ],
                None,
            )
            .await?;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: Page = decode(WHAT, &raw)?;
            out.extend(page.value);
            let Some(next) = page.next_link else {
                return Ok(out);
            };
            // The next link is absolute; `send` takes it relative to the API base.
            let path = next
                .strip_prefix(self.inner.api_base.as_str())
                .ok_or_else(|| DataverseError::Decode {
                    what: WHAT.into(),
                    message: format!(
                        "@odata.nextLink {next:?} does not start with the API base {}",
                        self.inner.api_base
                    ),
                })?;
            raw = self.send(Method::GET, path, &[], None).await?;
        }
        Err(DataverseError::Decode {
            what: WHAT.into(),
            message: format!("more than {MAX_PAGES} pages; the listing does not end"),
        })
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, DataverseError> {
        let raw = self.send(Method::GET, path, query, None).await?;
        decode(path, &raw)
    }

    async fn get_collection<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, DataverseError> {
        let c: Collection<T> = self.get_json(path, query).await?;
        Ok(c.value)
    }

    /// Sends one Web API request with auth, retries and error parsing.
    /// `body` is `Bytes` so a retry re-sends the same buffer without copying.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<Bytes, DataverseError> {
        let inner = &*self.inner;
        let policy = &inner.config.retry;
        let url = format!("{}{}", inner.api_base, path);
        let mut retries = 0u32;
        let mut refreshed_after_401 = false;
        loop {
            let token = inner.auth.token(&inner.http, policy).await?;
            let mut req = inner
                .http
                .request(method.clone(), &url)
                .bearer_auth(token)
                .header(ACCEPT, "application/json")
                .header("OData-MaxVersion", "4.0")
                .header("OData-Version", "4.0");
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(caller) = self.caller {
                req = req.header(caller.header_name(), caller.id().to_string());
            }
            if method == Method::PATCH {
                // A PATCH without it is an upsert: never create a row here.
                req = req.header(reqwest::header::IF_MATCH, "*");
            }
            if let Some(b) = &body {
                req = req
                    .header(CONTENT_TYPE, "application/json; charset=utf-8")
                    .body(b.clone());
            }
            let delay = match req.send().await {
                Ok(resp) if resp.status().is_success() => match resp.bytes().await {
                    Ok(b) => return Ok(b),
                    Err(e) if retries < policy.max_retries && is_transient_io(&e) => {
                        policy.backoff(retries)
                    }
                    Err(source) => {
                        return Err(DataverseError::Transport {
                            url,
                            attempts: retries + 1,
                            source,
                        });
                    }
                },
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED
                        && !refreshed_after_401
                        && inner.auth.can_refresh()
                    {
                        tracing::debug!(%url, "401: fetching a new token and retrying once");
                        inner.auth.invalidate().await;
                        refreshed_after_401 = true;
                        continue;
                    }
                    let retry_after = retry_after(resp.headers());
                    let raw = resp.bytes().await.unwrap_or_default();
                    let err = DataverseError::from_response(status.as_u16(), &raw);
                    let transient =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !transient || retries >= policy.max_retries {
                        return Err(err);
                    }
                    match retry_after {
                        Some(d) if d > policy.max_retry_after => {
                            return Err(DataverseError::Throttled {
                                retry_after_secs: d.as_secs(),
                            });
                        }
                        Some(d) => d,
                        None => policy.backoff(retries),
                    }
                }
                Err(e) if retries < policy.max_retries && is_transient_io(&e) => {
                    policy.backoff(retries)
                }
                Err(source) => {
                    return Err(DataverseError::Transport {
                        url,
                        attempts: retries + 1,
                        source,
                    });
                }
            };
            retries += 1;
            tracing::debug!(%url, retry = retries, delay_ms = delay.as_millis() as u64, "retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// The caller a `systemusers` lookup found, unless it found none or a
/// disabled user (`who` names what was looked for).
fn usable_caller(
    row: Option<SystemUser>,
    who: impl Fn() -> String,
) -> Result<CallerId, DataverseError> {
    match row {
        None => Err(DataverseError::UnknownCaller(format!(
            "{} is not a user of this environment (no systemusers row); add them to the environment, or change the stage's deploy-as",
            who()
        ))),
        Some(u) if u.is_disabled => Err(DataverseError::UnknownCaller(format!(
            "{} is disabled in this environment and cannot be acted for; enable them, or change the stage's deploy-as",
            who()
        ))),
        Some(u) => Ok(CallerId::SystemUserId(u.id)),
    }
}

fn is_transient_io(e: &reqwest::Error) -> bool {
    e.is_timeout() || e.is_connect() || e.is_request() || e.is_body()
}

/// `Retry-After` in seconds (the form Dataverse sends).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn decode<T: DeserializeOwned>(what: &str, raw: &[u8]) -> Result<T, DataverseError> {
    serde_json::from_slice(raw).map_err(|e| DataverseError::Decode {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// `{"CustomizationFile":"<base64>", ...rest}` built in one allocation: the
/// zip is base64-encoded exactly once, straight into the request body.
fn body_with_file(
    file: &[u8],
    rest: serde_json::Map<String, serde_json::Value>,
) -> Result<Bytes, DataverseError> {
    let rest = serde_json::to_vec(&rest).map_err(|e| DataverseError::Config(e.to_string()))?;
    let encoded_len = base64::encoded_len(file.len(), true).ok_or_else(|| {
        DataverseError::Config(format!(
            "a file of {} bytes is too large to send",
            file.len()
        ))
    })?;
    const HEAD: &[u8] = b"{\"CustomizationFile\":\"";
    let mut out = Vec::with_capacity(HEAD.len() + encoded_len + rest.len() + 2);
    out.extend_from_slice(HEAD);
    let start = out.len();
    out.resize(start + encoded_len, 0);
    STANDARD
        .encode_slice(file, &mut out[start..])
        .map_err(|e| DataverseError::Config(format!("base64 encoding failed: {e}")))?;
    out.push(b'"');
    if rest.len() > 2 {
        out.push(b',');
        out.extend_from_slice(&rest[1..]);
    } else {
        out.push(b'}');
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_body_is_valid_json_with_the_file_and_the_rest() {
        let mut rest = serde_json::Map::new();
        rest.insert("PublishWorkflows".into(), true.into());
        let body = body_with_file(b"PK\x03\x04zip", rest).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["PublishWorkflows"], true);
        let file = STANDARD
            .decode(v["CustomizationFile"].as_str().unwrap())
            .unwrap();
        assert_eq!(file, b"PK\x03\x04zip");

        let body = body_with_file(b"", serde_json::Map::new()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, json!({"CustomizationFile": ""}));
    }

    #[test]
    fn client_and_its_futures_can_cross_tasks() {
        fn send<T: Send + Sync>(_: &T) {}
        fn send_future<T: Send>(_: &T) {}
        let c = Client::new(ClientConfig::new(
            "https://contoso.crm.dynamics.com",
            Credentials::StaticToken("t".into()),
        ))
        .unwrap();
        send(&c);
        send_future(&c.who_am_i());
        send_future(&c.import_solution(&ImportRequest::new(Bytes::new())));
        send_future(&c.export_solution("x", true));
    }

    #[test]
    fn a_caller_goes_as_its_documented_header_on_a_shared_client() {
        let c = Client::new(ClientConfig::new(
            "https://contoso.crm.dynamics.com",
            Credentials::StaticToken("t".into()),
        ))
        .unwrap();
        assert_eq!(c.caller(), None);
        let id = Uuid::from_u128(7);
        let acting = c.acting_for(CallerId::ObjectId(id));
        assert_eq!(acting.caller(), Some(CallerId::ObjectId(id)));
        assert!(Arc::ptr_eq(&c.inner, &acting.inner), "one token cache");
        assert_eq!(c.caller(), None, "the original client acts as itself");
        assert_eq!(CallerId::ObjectId(id).header_name(), "CallerObjectId");
        assert_eq!(CallerId::SystemUserId(id).header_name(), "MSCRMCallerID");
        assert_eq!(
            CallerId::SystemUserId(id).to_string(),
            format!("MSCRMCallerID: {id}")
        );
        let none = usable_caller(None, || "user x".into()).unwrap_err();
        assert!(none.to_string().contains("user x is not a user"), "{none}");
    }

    #[test]
    fn odata_literals_double_quotes() {
        assert_eq!(odata_literal("O'Neil"), "'O''Neil'");
    }

    #[test]
    fn backoff_doubles_up_to_the_bound() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(0), Duration::from_millis(100));
        assert_eq!(p.backoff(1), Duration::from_millis(200));
        assert_eq!(p.backoff(2), Duration::from_millis(350));
        assert_eq!(p.backoff(40), Duration::from_millis(350));
    }

    #[test]
    fn component_parameters_carry_their_odata_type() {
        let v = serde_json::to_value(vec![
            ComponentParameter::EnvironmentVariableValue {
                schema_name: "x_Url".into(),
                value: "https://a".into(),
            },
            ComponentParameter::ConnectionReference {
                logical_name: "x_sp".into(),
                connection_id: "conn-1".into(),
            },
        ])
        .unwrap();
        assert_eq!(
            v,
            json!([
                {"@odata.type": "Microsoft.Dynamics.CRM.environmentvariablevalue", "schemaname": "x_Url", "value": "https://a"},
                {"@odata.type": "Microsoft.Dynamics.CRM.connectionreference", "connectionreferencelogicalname": "x_sp", "connectionid": "conn-1"}
            ])
        );
    }
}
