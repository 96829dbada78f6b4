//! The three custom resources as builders (as kube-rs's controller-rs builds its test objects):
//! each starts in its smallest valid form, as the API server would return it, and a test sets
//! only what it is about. One place for the JSON of a Tenant, ScanPolicy or RulePack, instead of
//! a copy per test module.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// A custom resource under construction (its JSON).
pub struct Fixture(Value);

/// Tenant `acme`: namespace `acme-prod`, API keys in Secret `acme-scanner-keys`.
pub fn tenant() -> Fixture {
    Fixture(json!({
        "apiVersion": "promptdefenders.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "acme"},
        "spec": {"namespaces": ["acme-prod"], "apiKeysSecretRef": {"name": "acme-scanner-keys"}}
    }))
}

/// ScanPolicy `name` in `acme-prod`, of tenant `acme`, binding the pack `acme`.
pub fn policy(name: &str) -> Fixture {
    Fixture(json!({
        "apiVersion": "promptdefenders.io/v1alpha1", "kind": "ScanPolicy",
        "metadata": {"name": name, "namespace": "acme-prod"},
        "spec": {"tenantRef": {"name": "acme"}, "rulePacks": ["acme"]}
    }))
}

/// RulePack `name` in `acme-prod`: one rule `r` (`other`, `high`, weight 80) matching `x`.
pub fn pack(name: &str) -> Fixture {
    Fixture(json!({
        "apiVersion": "promptdefenders.io/v1alpha1", "kind": "RulePack",
        "metadata": {"name": name, "namespace": "acme-prod"},
        "spec": {"version": "1", "rules": [{"id": "r", "category": "other", "severity": "high",
                 "weight": 80, "regex": "x"}]}
    }))
}

impl Fixture {
    /// Sets the value at a JSON pointer (`/spec/thresholds`), creating the objects on the way.
    pub fn set(mut self, pointer: &str, value: impl Into<Value>) -> Self {
        let mut at = &mut self.0;
        for key in pointer.trim_start_matches('/').split('/') {
            if !at.is_object() {
                *at = json!({});
            }
            at = at
                .as_object_mut()
                .expect("an object")
                .entry(key)
                .or_insert(Value::Null);
        }
        *at = value.into();
        self
    }

    pub fn namespace(self, namespace: &str) -> Self {
        self.set("/metadata/namespace", namespace)
    }

    pub fn uid(self, uid: &str) -> Self {
        self.set("/metadata/uid", uid)
    }

    pub fn generation(self, generation: i64) -> Self {
        self.set("/metadata/generation", generation)
    }

    pub fn status(self, status: Value) -> Self {
        self.set("/status", status)
    }

    /// The object as JSON (what a mocked API server answers with).
    pub fn json(self) -> Value {
        self.0
    }

    /// The object as its Rust type.
    pub fn build<K: DeserializeOwned>(self) -> K {
        serde_json::from_value(self.0).expect("fixture")
    }
}
