//! How the scanners are reached and what they may reach: Service and NetworkPolicy.

use super::*;

pub(super) fn service(names: &Names, owner: &Option<OwnerReference>) -> Service {
    Service {
        metadata: meta(names, &names.scanner, owner),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(names)),
            ports: Some(vec![ServicePort {
                name: Some(api_port_name(names).to_string()),
                app_protocol: names.tls.then(|| "https".to_string()),
                port: SCANNER_PORT,
                target_port: Some(IntOrString::String(api_port_name(names).to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Name of the scan API's container and Service port: `https` with TLS, else `http`.
pub(super) fn api_port_name(names: &Names) -> &'static str {
    if names.tls {
        "https"
    } else {
        "http"
    }
}

/// The port probes and metrics scrapers use: the API port, or with TLS the plain health port.
pub(super) fn metrics_port(names: &Names) -> i32 {
    if names.tls {
        HEALTH_PORT
    } else {
        SCANNER_PORT
    }
}

pub(super) fn tcp_port(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some("TCP".to_string()),
        port: Some(IntOrString::Int(port)),
        ..NetworkPolicyPort::default()
    }
}

pub(super) fn namespace_named(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_string(),
            name.to_string(),
        )])),
        ..LabelSelector::default()
    }
}

/// Selecting the scanner pods with both policy types makes everything not listed here denied:
/// ingress only from the tenant's clients and the monitoring namespace, egress only DNS and,
/// with the ConfigMap watch on, the API server's addresses (see [`crate::apiserver`]).
pub(super) fn network_policy(
    tenant: &Tenant,
    names: &Names,
    owner: &Option<OwnerReference>,
    settings: &Settings,
) -> NetworkPolicy {
    let monitoring_namespace = settings.monitoring_namespace.as_str();
    let clients: Vec<NetworkPolicyPeer> = tenant
        .spec
        .clients
        .iter()
        .filter(|c| c.namespace_selector.is_some() || c.pod_selector.is_some())
        .map(|c| NetworkPolicyPeer {
            namespace_selector: c.namespace_selector.clone(),
            pod_selector: c.pod_selector.clone(),
            ..NetworkPolicyPeer::default()
        })
        .collect();
    let mut ingress = Vec::new();
    if !clients.is_empty() {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(clients),
            ports: Some(vec![tcp_port(SCANNER_PORT)]),
        });
    }
    // Monitoring scrapes metrics: with TLS, on the plain health port only.
    ingress.push(NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(namespace_named(monitoring_namespace)),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![tcp_port(metrics_port(names))]),
    });
    let mut egress = egress_rules(&settings.api_server);
    let webhook_ports = webhook_ports(tenant);
    if !webhook_ports.is_empty() {
        egress.push(NetworkPolicyEgressRule {
            to: Some(
                ["0.0.0.0/0", "::/0"]
                    .map(|cidr| NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: cidr.to_string(),
                            except: None,
                        }),
                        ..NetworkPolicyPeer::default()
                    })
                    .to_vec(),
            ),
            ports: Some(
                webhook_ports
                    .into_iter()
                    .map(|p| tcp_port(i32::from(p)))
                    .collect(),
            ),
        });
    }
    NetworkPolicy {
        metadata: meta(names, &names.scanner, owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(names)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_string(), "Egress".to_string()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    }
}

/// DNS, then one rule per API-server port with the blocks reachable on it.
pub(super) fn egress_rules(api_server: &[ApiEndpoint]) -> Vec<NetworkPolicyEgressRule> {
    let dns = |protocol: &str| NetworkPolicyPort {
        protocol: Some(protocol.to_string()),
        port: Some(IntOrString::Int(53)),
        ..NetworkPolicyPort::default()
    };
    let mut rules = vec![NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(namespace_named("kube-system")),
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "k8s-app".to_string(),
                    "kube-dns".to_string(),
                )])),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![dns("UDP"), dns("TCP")]),
    }];
    let mut by_port: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for e in api_server {
        by_port.entry(e.port).or_default().push(&e.cidr);
    }
    for (port, blocks) in by_port {
        rules.push(NetworkPolicyEgressRule {
            to: Some(
                blocks
                    .into_iter()
                    .map(|cidr| NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: cidr.to_string(),
                            except: None,
                        }),
                        ..NetworkPolicyPeer::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![tcp_port(i32::from(port))]),
        });
    }
    rules
}
