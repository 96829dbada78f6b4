//! The scanner's identity: ServiceAccount, Role (its own bundle ConfigMap, and its Pod when it
//! reports what it serves) and RoleBinding.

use super::*;

pub(super) fn service_account(names: &Names, owner: &Option<OwnerReference>) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(names, &names.scanner, owner),
        ..ServiceAccount::default()
    }
}

/// Read access to the policy's own bundle ConfigMap and nothing else: a compromised scanner
/// must not read other tenants' bundles. `list` and `watch` with
/// `fieldSelector=metadata.name=<name>` are authorized against `resourceNames` too, which is
/// how the scanner's watch asks.
///
/// With [`Settings::scanners_report`] the scanner also patches its own Pod's annotations (the
/// bundle hash it serves). RBAC cannot name a Pod whose name is random, so this rule covers the
/// namespace's pods; the chart's ValidatingAdmissionPolicy restricts it to the caller's own Pod
/// and those annotations (docs/src/operator.md, "Conditions, reasons, and what `Ready` guarantees").
pub(super) fn role(names: &Names, owner: &Option<OwnerReference>, settings: &Settings) -> Role {
    let mut rules = vec![PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["configmaps".to_string()]),
        resource_names: Some(vec![names.bundle.clone()]),
        verbs: ["get", "list", "watch"].map(String::from).to_vec(),
        ..PolicyRule::default()
    }];
    if !settings.api_server.is_empty() {
        // The usage ledger: read its own key once at start, then merge-patch it.
        rules.push(PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".to_string()]),
            resource_names: Some(vec![ledger_name(&names.policy)]),
            verbs: ["get", "patch"].map(String::from).to_vec(),
            ..PolicyRule::default()
        });
    }
    if settings.scanners_report() {
        rules.push(PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".to_string()]),
            verbs: vec!["patch".to_string()],
            ..PolicyRule::default()
        });
    }
    Role {
        metadata: meta(names, &names.scanner, owner),
        rules: Some(rules),
    }
}

pub(super) fn role_binding(names: &Names, owner: &Option<OwnerReference>) -> RoleBinding {
    RoleBinding {
        metadata: meta(names, &names.scanner, owner),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: names.scanner.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: names.scanner.clone(),
            namespace: Some(names.namespace.clone()),
            ..Subject::default()
        }]),
    }
}
