//! Deleting what a test created, also when it panics.
//!
//! `Drop` cannot `.await`, and the test's runtime (and the kube `Client` bound to it) may be
//! the very thing being unwound. So the deletions run on a fresh thread with its own
//! current-thread runtime and its own `Client`, and `drop` joins that thread: when the test
//! function returns, its objects are gone (or being finalised by the API server).

use std::sync::Mutex;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject};
use kube::discovery::ApiResource;
use kube::Client;

/// Things to delete when the test ends; newest first, so a policy goes before its packs.
pub struct Cleanup {
    items: Mutex<Vec<Item>>,
    keep_on_failure: bool,
}

struct Item {
    resource: ApiResource,
    namespace: String,
    name: String,
    /// Deleted even when a failing test's objects are kept (load generators).
    always: bool,
}

impl Default for Cleanup {
    fn default() -> Self {
        Self::new()
    }
}

impl Cleanup {
    /// `PD_E2E_KEEP_ON_FAILURE=1` keeps a failing test's objects for `kubectl` inspection.
    pub fn new() -> Self {
        Cleanup {
            items: Mutex::new(Vec::new()),
            keep_on_failure: std::env::var("PD_E2E_KEEP_ON_FAILURE").is_ok_and(|v| v == "1"),
        }
    }

    /// Deletes `namespace/name` when the test ends, unless it failed and
    /// `PD_E2E_KEEP_ON_FAILURE=1`.
    pub fn add(&self, resource: ApiResource, namespace: &str, name: &str) {
        self.push(resource, namespace, name, false);
    }

    /// Deletes `namespace/name` when the test ends, whatever happened.
    pub fn add_always(&self, resource: ApiResource, namespace: &str, name: &str) {
        self.push(resource, namespace, name, true);
    }

    fn push(&self, resource: ApiResource, namespace: &str, name: &str, always: bool) {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Item {
                resource,
                namespace: namespace.to_string(),
                name: name.to_string(),
                always,
            });
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut items = std::mem::take(self.items.get_mut().unwrap_or_else(|e| e.into_inner()));
        if items.is_empty() {
            return;
        }
        items.reverse();
        if std::thread::panicking() && self.keep_on_failure {
            items.retain(|i| {
                if !i.always {
                    eprintln!(
                        "e2e: kept {} {}/{} for inspection (PD_E2E_KEEP_ON_FAILURE=1)",
                        i.resource.kind, i.namespace, i.name
                    );
                }
                i.always
            });
        }
        let worker = std::thread::spawn(move || delete_all(items));
        match worker.join() {
            Ok(problems) => {
                for p in problems {
                    eprintln!("e2e: cleanup: {p}");
                }
            }
            Err(_) => eprintln!("e2e: cleanup: the clean-up thread panicked"),
        }
    }
}

/// Deletes every item (404 is fine) and returns what could not be deleted.
fn delete_all(items: Vec<Item>) -> Vec<String> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return vec![format!("cannot start a runtime: {e}")],
    };
    runtime.block_on(async move {
        let step = Duration::from_secs(15);
        let client = match tokio::time::timeout(step, Client::try_default()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return vec![format!("no Kubernetes client: {e}")],
            Err(_) => return vec!["no Kubernetes client within 15 s".to_string()],
        };
        let mut problems = Vec::new();
        for item in items {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &item.namespace, &item.resource);
            let what = format!("{} {}/{}", item.resource.kind, item.namespace, item.name);
            match tokio::time::timeout(step, api.delete(&item.name, &DeleteParams::background()))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(kube::Error::Api(s))) if s.is_not_found() => {}
                Ok(Err(e)) => problems.push(format!("deleting {what}: {e}")),
                Err(_) => problems.push(format!("deleting {what}: no answer within 15 s")),
            }
        }
        problems
    })
}
