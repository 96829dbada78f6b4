//! `pd-scanner openapi`: print the OpenAPI document of the scan API.

use std::io::Write;

use super::Result;

pub fn openapi() -> Result<u8> {
    outln!(
        "{}",
        serde_json::to_string_pretty(&pd_scanner::serve::http::openapi_document())?
    )?;
    Ok(0)
}
