//! The demo solutions `slipway dev` installs in its development
//! environment, built with [`crate::solution_zip::SolutionZip`]. The CLI
//! embeds them as files (`crates/cli/src/demo/`); a test keeps those files
//! equal to what this builds. Regenerate with
//! `cargo run -p slipway-testkit --example demo_solutions -- crates/cli/src/demo`.

use crate::solution_zip::SolutionZip;

/// File name and zip bytes of each demo solution.
pub fn demo_solutions() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "ContosoCore.zip",
            SolutionZip::new("ContosoCore", "1.0.0.0")
                .display_name("Contoso Core")
                .publisher("Contoso", "contoso")
                .root_component(1, "contoso_project")
                .env_var(
                    "contoso_ApiBaseUrl",
                    100000000,
                    Some("https://api.contoso.example"),
                    None,
                )
                .build(),
        ),
        (
            "ContosoFlows.zip",
            SolutionZip::new("ContosoFlows", "1.0.0.0")
                .display_name("Contoso Flows")
                .publisher("Contoso", "contoso")
                .connection_reference_named(
                    "contoso_sharedoffice365",
                    "Office 365 Outlook",
                    "/providers/Microsoft.PowerApps/apis/shared_office365",
                )
                .env_var("contoso_MaxItems", 100000001, Some("50"), None)
                .build(),
        ),
        (
            "ContosoTeams.zip",
            SolutionZip::new("ContosoTeams", "1.0.0.0")
                .display_name("Contoso Teams notifications")
                .publisher("Contoso", "contoso")
                .connection_reference_named(
                    "contoso_sharedteams",
                    "Microsoft Teams",
                    "/providers/Microsoft.PowerApps/apis/shared_teams",
                )
                .required_env_var("contoso_ChannelId")
                .build(),
        ),
    ]
}
