//! The deployment settings file `pac solution create-settings` writes: every
//! environment variable with an empty value and every connection reference
//! with an empty connection id, in package order.

use serde::{Deserialize, Serialize};

use crate::model::Solution;

/// The settings file, fields in the order pac writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeploymentSettings {
    pub environment_variables: Vec<EnvironmentVariableSetting>,
    pub connection_references: Vec<ConnectionReferenceSetting>,
}

/// `{"SchemaName": .., "Value": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentVariableSetting {
    pub schema_name: String,
    pub value: String,
}

/// `{"LogicalName": .., "ConnectionId": .., "ConnectorId": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionReferenceSetting {
    pub logical_name: String,
    pub connection_id: String,
    pub connector_id: String,
}

/// The settings for `s`, values left empty for the operator to fill.
pub fn settings_for(s: &Solution) -> DeploymentSettings {
    DeploymentSettings {
        environment_variables: s
            .environment_variables
            .iter()
            .map(|v| EnvironmentVariableSetting {
                schema_name: v.schema_name.clone(),
                value: String::new(),
            })
            .collect(),
        connection_references: s
            .connection_references
            .iter()
            .map(|c| ConnectionReferenceSetting {
                logical_name: c.logical_name.clone(),
                connection_id: String::new(),
                connector_id: c.connector_id.clone(),
            })
            .collect(),
    }
}

/// The settings as a JSON value (key order is not kept by `Value`; use
/// [`to_json_string`] for the file).
pub fn deployment_settings(s: &Solution) -> serde_json::Value {
    serde_json::to_value(settings_for(s)).unwrap_or(serde_json::Value::Null)
}

/// The settings file text, two-space indented, keys in pac's order.
pub fn to_json_string(s: &Solution) -> String {
    serde_json::to_string_pretty(&settings_for(s)).unwrap_or_default()
}
