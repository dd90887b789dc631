//! What the end-to-end scenario tests (`deploy.rs`) and the UI tests
//! (`ui.rs`) build their worlds from: the simulator's connections, the
//! solution a maker makes in dev, and REST calls read as status and JSON.

use serde_json::Value;
use slipway_envsim::config::ConnectionConfig;
use slipway_testkit::solution_zip::{DepEnd, SolutionZip};
use uuid::Uuid;

pub const OUTLOOK: &str = "/providers/Microsoft.PowerApps/apis/shared_office365";
pub const SHAREPOINT: &str = "/providers/Microsoft.PowerApps/apis/shared_sharepointonline";

/// A connected connection of `connector` in a simulated environment.
pub fn connection(id: &str, connector: &str, display: &str) -> ConnectionConfig {
    ConnectionConfig {
        id: id.into(),
        connector_id: connector.into(),
        display_name: Some(display.into()),
        status: "Connected".into(),
    }
}

/// What a response said: its status and its JSON body (or the text as a
/// JSON string).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub fn id_of(value: &Value) -> Uuid {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {value}"))
        .parse()
        .unwrap()
}

/// An unmanaged solution as a maker builds it in dev: its own publisher
/// prefix, a table with a form, and the platform web resources a
/// model-driven app needs (present in every simulated environment).
pub fn solution(name: &str, prefix: &str) -> SolutionZip {
    SolutionZip::new(name, "1.0.0.0")
        .display_name(&format!("{name} (e2e)"))
        .publisher("contoso", prefix)
        .root_component(1, &format!("{prefix}_record"))
        .root_component(60, &format!("{prefix}_recordform"))
        .missing_dependency(
            DepEnd::new("61", "msdyn_/Images/AppModule.svg")
                .display_name("App icon")
                .solution("AppModuleWebResources (2.5.0.0)"),
            DepEnd::new("80", &format!("{prefix}_app")),
        )
}

/// A Dataverse client of the simulated environment `env` with the
/// simulator's `token`, polling imports every 50 ms for at most `deadline`.
pub fn dataverse(
    sim: &slipway_envsim::Running,
    token: &str,
    env: &str,
    deadline: std::time::Duration,
) -> slipway_dataverse::Client {
    let mut config = slipway_dataverse::ClientConfig::new(
        sim.env_url(env),
        slipway_dataverse::Credentials::StaticToken(token.into()),
    );
    config.request_timeout = std::time::Duration::from_secs(30);
    config.poll_interval = std::time::Duration::from_millis(50);
    config.poll_timeout = Some(deadline);
    slipway_dataverse::Client::new(config).unwrap()
}

/// Installs an unmanaged solution with `dev`, as a maker building it there.
pub async fn install_in_dev(dev: &slipway_dataverse::Client, solution: &SolutionZip) {
    let request = slipway_dataverse::ImportRequest::new(solution.build().into());
    dev.import_solution(&request)
        .await
        .unwrap_or_else(|e| panic!("installing in dev failed: {e}"));
}
