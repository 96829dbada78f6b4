//! `pd-scanner bundle`: print the policy's compiled-and-checked bundle.

use std::io::Write;
use std::path::PathBuf;

use pd_scanner::bundle::load_sources_with;
use pd_scanner::limits::Limits;

use super::Result;

pub fn bundle(files: &[PathBuf], policy: Option<&str>, limits: &Limits) -> Result<u8> {
    let loaded = load_sources_with(files, limits)?;
    let doc = pd_scanner::bundle::bundle_document_with(&loaded, policy, limits)?;
    outln!("{}", serde_json::to_string_pretty(&doc)?)?;
    Ok(0)
}
