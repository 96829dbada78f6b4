//! The API resources the tests touch and helpers to read their status as JSON.
//!
//! The CRDs are handled as `DynamicObject`s on purpose: the tests check the wire format
//! (`activeBundleHash`, `RulePacksReady`, …) a user sees, not the operator's Rust types.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::discovery::ApiResource;
use serde_json::Value;

/// Label on everything the suite creates, for diagnostics and manual clean-up.
pub const E2E_LABEL: (&str, &str) = ("promptdefenders.io/e2e", "true");

const GROUP: &str = "promptdefenders.io";
const VERSION: &str = "v1alpha1";

fn crd(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

pub fn scanpolicy_resource() -> ApiResource {
    crd("ScanPolicy", "scanpolicies")
}

pub fn rulepack_resource() -> ApiResource {
    crd("RulePack", "rulepacks")
}

/// Cluster-scoped.
pub fn tenant_resource() -> ApiResource {
    crd("Tenant", "tenants")
}

/// The nine children the operator creates for ScanPolicy `policy`, as (resource, name).
/// Names follow the operator's convention: the ConfigMap is `<policy>-bundle`, the rest
/// `<policy>-scanner`.
pub fn child_resources(policy: &str) -> Vec<(ApiResource, String)> {
    let scanner = format!("{policy}-scanner");
    vec![
        (ApiResource::erase::<ServiceAccount>(&()), scanner.clone()),
        (ApiResource::erase::<Role>(&()), scanner.clone()),
        (ApiResource::erase::<RoleBinding>(&()), scanner.clone()),
        (
            ApiResource::erase::<ConfigMap>(&()),
            format!("{policy}-bundle"),
        ),
        (ApiResource::erase::<Service>(&()), scanner.clone()),
        (ApiResource::erase::<NetworkPolicy>(&()), scanner.clone()),
        (ApiResource::erase::<Deployment>(&()), scanner.clone()),
        (
            ApiResource::erase::<HorizontalPodAutoscaler>(&()),
            scanner.clone(),
        ),
        (ApiResource::erase::<PodDisruptionBudget>(&()), scanner),
    ]
}

/// The condition of type `type_` in `status.conditions` of an object's JSON (`DynamicObject::data`).
pub fn condition<'a>(data: &'a Value, type_: &str) -> Option<&'a Value> {
    data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// `Ready=False (RulePacksInvalid: rule …); …` for timeout and assertion messages.
pub fn describe_conditions(data: &Value) -> String {
    let Some(conditions) = data["status"]["conditions"].as_array() else {
        return "no status conditions yet".into();
    };
    conditions
        .iter()
        .map(|c| {
            format!(
                "{}={} ({}: {})",
                c["type"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?"),
                c["reason"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn children_follow_the_operator_naming() {
        let children = child_resources("acme-chat");
        assert_eq!(children.len(), 9);
        let kinds: Vec<_> = children
            .iter()
            .map(|(r, n)| format!("{}/{n}", r.kind))
            .collect();
        assert!(kinds.contains(&"ConfigMap/acme-chat-bundle".to_string()));
        assert!(kinds.contains(&"HorizontalPodAutoscaler/acme-chat-scanner".to_string()));
        let hpa = &children[7].0;
        assert_eq!(
            (hpa.group.as_str(), hpa.version.as_str()),
            ("autoscaling", "v2")
        );
        assert_eq!(
            scanpolicy_resource().api_version,
            "promptdefenders.io/v1alpha1"
        );
    }

    #[test]
    fn conditions_are_found_and_described() {
        let data = json!({"status": {"conditions": [
            {"type": "RulePacksReady", "status": "False", "reason": "RulePacksInvalid", "message": "rule `x`: bad"},
            {"type": "Ready", "status": "False", "reason": "RulePacksInvalid", "message": "rule `x`: bad"}
        ]}});
        assert_eq!(condition(&data, "Ready").unwrap()["status"], "False");
        assert!(condition(&data, "Available").is_none());
        let text = describe_conditions(&data);
        assert!(
            text.starts_with("RulePacksReady=False (RulePacksInvalid: rule `x`: bad)"),
            "{text}"
        );
        assert_eq!(describe_conditions(&json!({})), "no status conditions yet");
    }
}
