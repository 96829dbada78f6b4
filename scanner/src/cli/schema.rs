//! `pd-scanner schema`: print the JSON schema of the rule-pack format.

use std::io::Write;

use pd_scanner::pack::RulePackSpec;

use super::Result;

pub fn schema() -> Result<u8> {
    let schema = schemars::schema_for!(RulePackSpec);
    outln!("{}", serde_json::to_string_pretty(&schema)?)?;
    Ok(0)
}
