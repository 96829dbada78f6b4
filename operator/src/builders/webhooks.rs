//! The tenant's webhooks: the file the scanners read, where its keys are mounted, the ports
//! the egress must allow.

use super::*;

/// The tenant's webhooks file (`serve --webhooks`), in the bundle ConfigMap under this key and
/// mounted on its own (the bundle directory must hold nothing but the bundle).
pub(super) const WEBHOOKS_KEY: &str = "webhooks.yaml";
pub(super) const WEBHOOKS_DIR: &str = "/etc/pd/webhooks";
/// Signing keys, one directory per webhook (and one per key being rotated out).
pub(super) const WEBHOOK_KEYS_DIR: &str = "/etc/pd/webhook-keys";
/// Pod-template annotation with the webhooks file's hash: the scanner reads that file once at
/// start, so a change must roll the pods (signing keys need no roll: they are re-read).
pub const WEBHOOKS_HASH_ANNOTATION: &str = "promptdefenders.io/webhooks-hash";

pub(super) fn webhook_name(i: usize, w: &crate::crd::Webhook) -> String {
    w.name.clone().unwrap_or_else(|| format!("webhook-{i}"))
}

pub(super) fn webhook_key_paths(i: usize, w: &crate::crd::Webhook) -> Vec<String> {
    let mut keys = vec![format!("{WEBHOOK_KEYS_DIR}/{i}/current")];
    if w.previous_secret_ref.is_some() {
        keys.push(format!("{WEBHOOK_KEYS_DIR}/{i}-previous/previous"));
    }
    keys
}

/// The scanner's webhooks file for `tenant` (`None` without webhooks): the Tenant's fields,
/// with the signing keys at the paths [`deployment`] mounts them at. Batching, rate and
/// retries keep the scanner's defaults.
pub fn webhooks_file(tenant: &Tenant) -> Result<Option<String>, BuildError> {
    if tenant.spec.webhooks.is_empty() {
        return Ok(None);
    }
    let list: Vec<serde_json::Value> = tenant
        .spec
        .webhooks
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let mut o = serde_json::json!({
                "name": webhook_name(i, w),
                "url": w.url,
                "minSeverity": w.min_severity,
                "keyFiles": webhook_key_paths(i, w),
            });
            if let Some(f) = w.format {
                o["format"] = serde_json::json!(f);
            }
            if !w.verdicts.is_empty() {
                o["verdicts"] = serde_json::json!(w.verdicts);
            }
            if let Some(l) = &w.link_template {
                o["linkTemplate"] = serde_json::json!(l);
            }
            if w.allow_insecure_http {
                o["allowInsecureHttp"] = serde_json::json!(true);
            }
            o
        })
        .collect();
    Ok(Some(serde_yaml::to_string(&list)?))
}

/// TCP ports the webhook URLs name (443 for `https://`, 80 for `http://`, else the explicit
/// one). NetworkPolicy cannot match host names, so scanner egress for webhooks goes to these
/// ports on any address.
pub fn webhook_ports(tenant: &Tenant) -> std::collections::BTreeSet<u16> {
    tenant
        .spec
        .webhooks
        .iter()
        .filter_map(|w| {
            let uri: axum::http::Uri = w.url.parse().ok()?;
            let default = match uri.scheme_str()? {
                "https" => 443,
                "http" => 80,
                _ => return None,
            };
            Some(uri.port_u16().unwrap_or(default))
        })
        .collect()
}
