//! The policy file's JSON Schema, generated from the types `raw.rs` decodes:
//! for editors, which complete keys and flag mistakes as one types.
//! `validate` remains the judge of meaning (bounds, crons, zones, overlaps).

use schemars::generate::SchemaSettings;

use super::raw;
use crate::secret::SecretSource;

/// Where the published schema lives in the repository (and in the package).
pub const PATH: &str = "config/policy.schema.json";

/// The schema, as `mdc-autoscaler schema` prints it.
pub fn policy_file() -> serde_json::Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let settings = generator.subschema_for::<raw::Settings>();
    let policy = generator.subschema_for::<raw::Policy>();
    // Referenced, so that the settings' secrets are described once.
    let _ = generator.subschema_for::<SecretSource>();
    let definitions = generator.take_definitions(true);
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "mdc-autoscaler policy file",
        "description": "settings and policies; see config/example.yaml for every key, commented",
        "type": "object",
        "properties": {
            "settings": settings,
            "policies": { "type": "array", "items": policy },
        },
        "additionalProperties": false,
        "$defs": definitions,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_published_schema_is_the_generated_one() {
        let published: serde_json::Value =
            serde_json::from_str(include_str!("../../config/policy.schema.json")).expect("valid JSON");
        assert!(
            published == super::policy_file(),
            "{} is stale: run `mdc-autoscaler schema > {}`",
            super::PATH,
            super::PATH
        );
    }
}
