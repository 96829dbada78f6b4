//! Where scanner pods may reach the Kubernetes API server, for their direct ConfigMap watch.
//!
//! A NetworkPolicy cannot name "the API server": it can only allow IP blocks and ports. Which
//! addresses a packet to the API carries when the policy is checked depends on the network
//! plugin (the `kubernetes` Service's ClusterIP before DNAT, or an endpoint after it), so the
//! scanners' egress allows both: the ClusterIP on the Service port and every endpoint address on
//! the endpoint port. `--api-server-egress auto` reads them at operator start and again whenever
//! the `kubernetes` EndpointSlices change ([`changes`]), so a control plane that moves (managed
//! clusters during upgrades) gets its scanners' NetworkPolicies re-applied.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use thiserror::Error;

/// One allowed destination of scanner egress to the API server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiEndpoint {
    /// `10.96.0.1/32`, `fd00::1/128`, or a wider range given by hand.
    pub cidr: String,
    pub port: u16,
}

impl fmt::Display for ApiEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((addr, len)) = self
            .cidr
            .split_once('/')
            .filter(|_| self.cidr.contains(':'))
        {
            write!(f, "[{addr}]/{len}:{}", self.port)
        } else {
            write!(f, "{}:{}", self.cidr, self.port)
        }
    }
}

impl ApiEndpoint {
    fn host(ip: IpAddr, port: u16) -> Self {
        let len = if ip.is_ipv4() { 32 } else { 128 };
        ApiEndpoint {
            cidr: format!("{ip}/{len}"),
            port,
        }
    }
}

/// `--api-server-egress`: whether scanners watch their ConfigMap through the API, and where
/// that API is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ApiServerEgress {
    /// No watch: no token in scanner pods, egress DNS only, reloads on kubelet's schedule.
    #[default]
    Off,
    /// Read the `kubernetes` Service and its EndpointSlices in `default` at start.
    Auto,
    /// Exactly these destinations.
    Endpoints(Vec<ApiEndpoint>),
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "--api-server-egress must be off, auto, or a comma-separated list of CIDR:PORT \
     (e.g. 10.96.0.1/32:443,172.18.0.2/32:6443; IPv6 as [fd00::1]/128:443), not {0:?}: {1}"
)]
pub struct ParseEgressError(String, &'static str);

impl FromStr for ApiServerEgress {
    type Err = ParseEgressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| ParseEgressError(s.to_string(), why);
        match s.trim() {
            "" | "off" => return Ok(ApiServerEgress::Off),
            "auto" => return Ok(ApiServerEgress::Auto),
            _ => {}
        }
        let mut endpoints = Vec::new();
        for item in s.split(',').map(str::trim) {
            let (cidr, port) = item.rsplit_once(':').ok_or_else(|| err("no :PORT"))?;
            let port: u16 = port
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| err("bad port"))?;
            let cidr = cidr
                .strip_prefix('[')
                .and_then(|c| c.split_once(']'))
                .map(|(addr, rest)| format!("{addr}{rest}"))
                .unwrap_or_else(|| cidr.to_string());
            let (addr, len) = cidr.split_once('/').ok_or_else(|| err("no /PREFIX"))?;
            let ip: IpAddr = addr.parse().map_err(|_| err("bad address"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len: u8 = len
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| err("bad prefix length"))?;
            endpoints.push(ApiEndpoint {
                cidr: format!("{ip}/{len}"),
                port,
            });
        }
        endpoints.sort();
        endpoints.dedup();
        Ok(ApiServerEgress::Endpoints(endpoints))
    }
}

/// The label the API server puts on the EndpointSlices of Service `default/kubernetes`.
pub const SLICE_SELECTOR: &str = "kubernetes.io/service-name=kubernetes";

#[derive(Debug, Error)]
pub enum DiscoveryError {
    #[error("reading Service default/kubernetes and its EndpointSlices: {0}")]
    Api(#[from] kube::Error),
    #[error("Service default/kubernetes has {0}")]
    Incomplete(&'static str),
}

/// The `kubernetes` Service's ClusterIPs on its port, and its endpoints on theirs.
pub async fn discover(client: &Client) -> Result<Vec<ApiEndpoint>, DiscoveryError> {
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = services.get("kubernetes").await?;
    let spec = svc.spec.ok_or(DiscoveryError::Incomplete("no spec"))?;
    let ports = spec.ports.unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("https"))
        .or_else(|| ports.first())
        .map(|p| p.port)
        .ok_or(DiscoveryError::Incomplete("no port"))?;
    let cluster_ips = spec
        .cluster_ips
        .filter(|ips| !ips.is_empty())
        .or_else(|| spec.cluster_ip.map(|ip| vec![ip]))
        .unwrap_or_default();
    let mut endpoints = Vec::new();
    for ip in cluster_ips
        .iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
    {
        endpoints.push(ApiEndpoint::host(ip, u16::try_from(port).unwrap_or(443)));
    }
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let list = slices
        .list(&ListParams::default().labels(SLICE_SELECTOR))
        .await?;
    let mut backends = 0;
    for slice in list.items {
        let ports: Vec<u16> = slice
            .ports
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.port.and_then(|p| u16::try_from(p).ok()))
            .collect();
        for ep in slice.endpoints {
            for addr in ep.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                for port in &ports {
                    endpoints.push(ApiEndpoint::host(addr, *port));
                    backends += 1;
                }
            }
        }
    }
    if backends == 0 {
        return Err(DiscoveryError::Incomplete("no endpoint addresses"));
    }
    endpoints.sort();
    endpoints.dedup();
    Ok(endpoints)
}

/// Watches the API server's EndpointSlices and, on every change (and once after each
/// (re)list), reads the addresses again and hands them to `update`, which stores them and says
/// whether they differ from the ones in use; the stream yields `()` for each that did, which
/// the ScanPolicy controller turns into a re-apply of every policy. A failed read keeps the
/// addresses in use: a control plane restarting has no endpoints for a moment.
pub fn changes<F>(client: Client, update: F) -> impl Stream<Item = ()> + Send
where
    F: Fn(Vec<ApiEndpoint>) -> bool + Send + Sync + 'static,
{
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let update = Arc::new(update);
    watcher::watcher(slices, watcher::Config::default().labels(SLICE_SELECTOR))
        .default_backoff()
        .filter_map(move |event| {
            let (client, update) = (client.clone(), update.clone());
            async move {
                match event {
                    Ok(Event::Apply(_) | Event::Delete(_) | Event::InitDone) => {}
                    Ok(Event::Init | Event::InitApply(_)) => return None,
                    Err(e) => {
                        tracing::warn!(error = %e, "watching the API server's EndpointSlices");
                        return None;
                    }
                }
                match discover(&client).await {
                    Ok(found) => update(found).then_some(()),
                    Err(e) => {
                        tracing::warn!(error = %e, "re-reading the API server's addresses; keeping the ones in use");
                        None
                    }
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_off_auto_and_lists() {
        assert_eq!("off".parse(), Ok(ApiServerEgress::Off));
        assert_eq!("".parse(), Ok(ApiServerEgress::Off));
        assert_eq!("auto".parse(), Ok(ApiServerEgress::Auto));
        assert_eq!(
            "172.18.0.2/32:6443, 10.96.0.1/32:443,[fd00::1]/128:443,10.96.0.1/32:443".parse(),
            Ok(ApiServerEgress::Endpoints(vec![
                ApiEndpoint {
                    cidr: "10.96.0.1/32".into(),
                    port: 443
                },
                ApiEndpoint {
                    cidr: "172.18.0.2/32".into(),
                    port: 6443
                },
                ApiEndpoint {
                    cidr: "fd00::1/128".into(),
                    port: 443
                },
            ]))
        );
        for bad in [
            "10.0.0.1:443",
            "10.0.0.1/33:443",
            "10.0.0.1/32",
            "10.0.0.1/32:0",
            "10.0.0.1/32:99999",
            "host/32:443",
            "auto,10.0.0.1/32:443",
        ] {
            assert!(bad.parse::<ApiServerEgress>().is_err(), "{bad}");
        }
        let e = ApiEndpoint {
            cidr: "fd00::1/128".into(),
            port: 443,
        };
        assert_eq!(e.to_string(), "[fd00::1]/128:443");
        assert_eq!(
            e.to_string().parse(),
            Ok(ApiServerEgress::Endpoints(vec![e]))
        );
    }
}
