//! The scanner Deployment: command line, container, volumes (bundle, keys, TLS, webhooks)
//! and pod template.

use super::*;

/// The HMAC Secret's name and data key: the tenant's ref, else `<tenant>-hmac` / `key`.
pub fn hmac_secret(tenant: &Tenant) -> (String, String) {
    match &tenant.spec.hmac_key_secret_ref {
        Some(r) => (
            r.name.clone(),
            r.key.clone().unwrap_or_else(|| "key".to_string()),
        ),
        None => (format!("{}-hmac", tenant.name_any()), "key".to_string()),
    }
}

/// The scanner's command line.
// Over 80 lines: one flag per line, in the order `pd-scanner serve --help` lists them.
pub fn scanner_args(policy: &ScanPolicy, tenant: &Tenant, settings: &Settings) -> Vec<String> {
    let mut args: Vec<String> = [
        "serve",
        "-f",
        BUNDLE_DIR,
        "--keys",
        KEYS_DIR,
        "--hmac-key-file",
        "/etc/pd/hmac/key",
        "--listen",
        "0.0.0.0:8080",
        "--log-format",
        "json",
        // The tamper-evident audit chain goes to stdout and logs to stderr, so a log pipeline
        // can tell them apart by stream; the root file system is read-only, so no file sink.
        "--audit-stdout",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !settings.api_server.is_empty() {
        // The pod's own namespace comes from its service account's `namespace` file.
        args.extend([
            "--configmap".to_string(),
            bundle_config_map(&policy.name_any()),
        ]);
    }
    if settings.scanners_report() {
        // `$(POD_NAME)` is expanded by the kubelet from the container's downward-API env.
        args.extend(["--report-pod".to_string(), "$(POD_NAME)".to_string()]);
    }
    if !tenant.spec.webhooks.is_empty() {
        args.extend([
            "--webhooks".to_string(),
            format!("{WEBHOOKS_DIR}/{WEBHOOKS_KEY}"),
        ]);
    }
    if !settings.api_server.is_empty() {
        args.extend([
            "--usage-ledger".to_string(),
            ledger_name(&policy.name_any()),
        ]);
    }
    if !tenant.spec.webhooks.is_empty() || !settings.api_server.is_empty() {
        args.extend(["--pod-name".to_string(), "$(POD_NAME)".to_string()]);
    }
    if let Some(n) = policy.spec.scanner.max_prompt_bytes {
        args.extend(["--max-prompt-bytes".to_string(), n.to_string()]);
    }
    if let Some(r) = &tenant.spec.rate_limit {
        args.extend([
            "--rate-limit".to_string(),
            r.requests_per_second.to_string(),
            "--rate-burst".to_string(),
            r.burst.to_string(),
        ]);
    }
    if let Some(days) = tenant.spec.audit_retention_days {
        // Rotation and deletion apply to an audit file sink (`--audit-file`, e.g. set through
        // `PD_AUDIT_FILE` with a volume); the records on stdout are kept by the log pipeline.
        args.extend(["--audit-retention-days".to_string(), days.to_string()]);
    }
    if let Some(tls) = &policy.spec.tls {
        args.extend([
            "--tls-cert".to_string(),
            format!("{TLS_DIR}/tls.crt"),
            "--tls-key".to_string(),
            format!("{TLS_DIR}/tls.key"),
        ]);
        if tls.require_client_cert {
            args.extend([
                "--client-ca".to_string(),
                format!("{TLS_DIR}/{CLIENT_CA_FILE}"),
            ]);
        }
        args.extend([
            "--health-listen".to_string(),
            format!("0.0.0.0:{HEALTH_PORT}"),
        ]);
    }
    args
}

/// Where the client CA lands in the TLS volume.
pub(super) const CLIENT_CA_FILE: &str = "client-ca.crt";

/// The TLS volume: one projected volume of the serving Secret's `tls.crt` and `tls.key` and,
/// with client certificates required, a `ca.crt` (the serving Secret's or
/// `clientCASecretName`'s) as `client-ca.crt`. Projected Secret volumes are updated in place
/// by the kubelet (an atomic `..data` swap), which is how a renewal reaches the scanner's
/// reload; listing the keys makes a Secret without one fail the mount visibly rather than
/// start a scanner that cannot load. Readable by the scanner's group only (`fsGroup`).
pub(super) fn tls_volume(tls: &TlsSpec) -> Volume {
    let item = |key: &str, path: &str| KeyToPath {
        key: key.to_string(),
        path: path.to_string(),
        ..KeyToPath::default()
    };
    let mut serving = vec![item("tls.crt", "tls.crt"), item("tls.key", "tls.key")];
    let mut sources = Vec::new();
    let separate_ca = match (&tls.client_ca_secret_name, tls.require_client_cert) {
        (Some(ca), true) => Some(ca.clone()),
        (None, true) => {
            serving.push(item("ca.crt", CLIENT_CA_FILE));
            None
        }
        (_, false) => None,
    };
    sources.push(VolumeProjection {
        secret: Some(SecretProjection {
            name: tls.secret_name.clone(),
            items: Some(serving),
            optional: Some(false),
        }),
        ..VolumeProjection::default()
    });
    if let Some(ca) = separate_ca {
        sources.push(VolumeProjection {
            secret: Some(SecretProjection {
                name: ca,
                items: Some(vec![item("ca.crt", CLIENT_CA_FILE)]),
                optional: Some(false),
            }),
            ..VolumeProjection::default()
        });
    }
    Volume {
        name: "tls".to_string(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            default_mode: Some(0o440),
        }),
        ..Volume::default()
    }
}

/// Requests CPU so the HPA has something to scale on; limits memory so one pod cannot starve
/// a node. The memory request is the measured need with headroom: the image's scanner binary
/// peaked at 37–41 MiB through 300,000 distinct prompts and at 43.4–46.0 MiB once
/// `bench/load.sh` had also reloaded the bundle every 2 s under load (a reload builds what
/// changed beside the serving bundle and shares the rest; docs/src/performance.md,
/// 2026-12-01, 10:45); the limit leaves room for concurrent maximal prompts.
pub fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), q("100m")),
            ("memory".to_string(), q("64Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), q("512Mi"))])),
        ..ResourceRequirements::default()
    }
}

/// The restricted Pod Security Standard, field by field.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(SCANNER_UID),
        run_as_group: Some(SCANNER_UID),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// An HTTP probe on the port named `http`: the API port without TLS, the plain health port
/// with it (kubelet presents no client certificate, so it could not probe a mutual-TLS port).
pub(super) fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("http".to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

pub(super) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

pub(super) fn deployment(
    policy: &ScanPolicy,
    tenant: &Tenant,
    names: &Names,
    owner: &Option<OwnerReference>,
    settings: &Settings,
) -> Deployment {
    let container = scanner_container(policy, tenant, names, settings);
    let volumes = scanner_volumes(policy, tenant, names);
    let pod_annotations = pod_annotations(tenant, names);
    Deployment {
        metadata: meta(names, &names.scanner, owner),
        spec: Some(DeploymentSpec {
            // Left unset: the HPA owns the replica count, and setting it here would make every
            // apply fight the autoscaler.
            replicas: None,
            selector: LabelSelector {
                match_labels: Some(selector_labels(names)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(names)),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names.scanner.clone()),
                    // A token only for the ConfigMap watch (its Role reads this one ConfigMap
                    // and nothing else); without the watch the scanner never calls the API,
                    // so a compromised pod then holds no credential at all.
                    automount_service_account_token: Some(!settings.api_server.is_empty()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(SCANNER_UID),
                        run_as_group: Some(SCANNER_UID),
                        fs_group: Some(SCANNER_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_string(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The scanner container: image, args, env, ports, probes, resources and the mounts of
/// [`scanner_volumes`].
// Over 80 lines: one object literal, read top to bottom like the YAML it renders.
pub(super) fn scanner_container(
    policy: &ScanPolicy,
    tenant: &Tenant,
    names: &Names,
    settings: &Settings,
) -> Container {
    let default_image = settings.scanner_image.as_str();
    let scanner = &policy.spec.scanner;
    let port = |name: &str, number: i32| ContainerPort {
        name: Some(name.to_string()),
        container_port: number,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    };
    let mut ports = vec![port(api_port_name(names), SCANNER_PORT)];
    let mut mounts = vec![
        mount("bundle", BUNDLE_DIR, true),
        mount("keys", KEYS_DIR, true),
        mount("hmac", HMAC_DIR, true),
        mount("tmp", "/tmp", false),
    ];
    if policy.spec.tls.is_some() {
        ports.push(port("http", HEALTH_PORT));
        mounts.push(mount("tls", TLS_DIR, true));
    }
    let has_webhooks = !tenant.spec.webhooks.is_empty();
    if has_webhooks {
        mounts.push(mount("webhooks", WEBHOOKS_DIR, true));
        for (i, w) in tenant.spec.webhooks.iter().enumerate() {
            mounts.push(mount(
                &format!("webhook-key-{i}"),
                &format!("{WEBHOOK_KEYS_DIR}/{i}"),
                true,
            ));
            if w.previous_secret_ref.is_some() {
                mounts.push(mount(
                    &format!("webhook-prev-{i}"),
                    &format!("{WEBHOOK_KEYS_DIR}/{i}-previous"),
                    true,
                ));
            }
        }
    }
    Container {
        name: "scanner".to_string(),
        image: Some(
            scanner
                .image
                .clone()
                .unwrap_or_else(|| default_image.to_string()),
        ),
        image_pull_policy: Some("IfNotPresent".to_string()),
        args: Some(scanner_args(policy, tenant, settings)),
        env: (settings.scanners_report() || has_webhooks).then(|| {
            let mut env = vec![EnvVar {
                name: "POD_NAME".to_string(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".to_string(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            }];
            if has_webhooks {
                // The CA bundle the scanner image ships for webhook deliveries over HTTPS.
                env.push(EnvVar {
                    name: "SSL_CERT_FILE".to_string(),
                    value: Some("/etc/ssl/certs/ca-certificates.crt".to_string()),
                    ..EnvVar::default()
                });
            }
            env
        }),
        ports: Some(ports),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: Some(scanner.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(container_security_context()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// The pod's volumes: the bundle, API keys, HMAC key, `/tmp`, and the TLS and webhook files
/// when the policy and tenant have them.
// Over 80 lines: one volume literal each, read top to bottom like the YAML it renders.
pub(super) fn scanner_volumes(policy: &ScanPolicy, tenant: &Tenant, names: &Names) -> Vec<Volume> {
    let (hmac_name, hmac_key) = hmac_secret(tenant);
    let has_webhooks = !tenant.spec.webhooks.is_empty();
    let mut volumes = vec![
        Volume {
            name: "bundle".to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.bundle.clone(),
                // Only the bundle: the scanner loads every file of this directory.
                items: Some(vec![KeyToPath {
                    key: BUNDLE_KEY.to_string(),
                    path: BUNDLE_KEY.to_string(),
                    ..KeyToPath::default()
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "keys".to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tenant.spec.api_keys_secret_ref.name.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "hmac".to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(hmac_name),
                items: Some(vec![KeyToPath {
                    key: hmac_key,
                    path: "key".to_string(),
                    ..KeyToPath::default()
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("16Mi".to_string())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    if let Some(tls) = &policy.spec.tls {
        volumes.push(tls_volume(tls));
    }
    if has_webhooks {
        volumes.push(Volume {
            name: "webhooks".to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.bundle.clone(),
                items: Some(vec![KeyToPath {
                    key: WEBHOOKS_KEY.to_string(),
                    path: WEBHOOKS_KEY.to_string(),
                    ..KeyToPath::default()
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        // Whole Secret volumes (no subPath), so a rotated key reaches the pod. Optional: a
        // signing Secret that does not exist (yet) must not keep the scanners in
        // ContainerCreating; the scanner then refuses just that webhook (`no_key`) until
        // kubelet writes the key, and picks it up at the next delivery.
        let key_volume = |name: String, r: &crate::crd::SecretRef, path: &str| Volume {
            name,
            secret: Some(SecretVolumeSource {
                secret_name: Some(r.name.clone()),
                items: Some(vec![KeyToPath {
                    key: r.key.clone().unwrap_or_else(|| "secret".to_string()),
                    path: path.to_string(),
                    ..KeyToPath::default()
                }]),
                optional: Some(true),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        };
        for (i, w) in tenant.spec.webhooks.iter().enumerate() {
            volumes.push(key_volume(
                format!("webhook-key-{i}"),
                &w.secret_ref,
                "current",
            ));
            if let Some(prev) = &w.previous_secret_ref {
                volumes.push(key_volume(format!("webhook-prev-{i}"), prev, "previous"));
            }
        }
    }
    volumes
}

/// The pod template's annotations: Prometheus scraping, and the webhooks file's hash.
pub(super) fn pod_annotations(tenant: &Tenant, names: &Names) -> BTreeMap<String, String> {
    // No bundle hash on the pod template: the scanners hot-reload the mounted ConfigMap, so a
    // new bundle must not restart them (nor a renewed certificate: they reload that too).
    let mut pod_annotations = BTreeMap::from(
        [
            ("prometheus.io/scrape", "true".to_string()),
            ("prometheus.io/port", metrics_port(names).to_string()),
            ("prometheus.io/path", "/metrics".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    // The webhooks file is read once at start: a new one rolls the pods.
    if let Ok(Some(file)) = webhooks_file(tenant) {
        use sha2::Digest;
        pod_annotations.insert(
            WEBHOOKS_HASH_ANNOTATION.to_string(),
            format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(file.as_bytes()))
            ),
        );
    }
    pod_annotations
}
