//! `pd-operator`: `run` starts the controllers, `crdgen` writes the CRDs, `render` prints what
//! the operator would apply.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pd_operator::apiserver::{ApiEndpoint, ApiServerEgress, DiscoveryError};
use thiserror::Error;

/// Why a command failed (exit 3). Each variant says what was being done, so the message alone
/// tells an operator reading a crash-looping pod's log where it stopped.
#[derive(Debug, Error)]
enum MainError {
    #[error("cannot render the CRDs: {0}")]
    Crd(#[from] serde_yaml::Error),
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot connect to the Kubernetes API: {0}")]
    Connect(kube::Error),
    #[error(
        "--api-server-egress auto: {0}; grant the operator get on Service default/kubernetes and \
         list on EndpointSlices in default, or pass the addresses as CIDR:PORT,..., or off"
    )]
    Discover(DiscoveryError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Run(#[from] pd_operator::controller::RunError),
    #[error(transparent)]
    Render(#[from] pd_operator::render::RenderError),
}

/// Where `crdgen` writes by default, relative to the repository root: the CRDs applied with
/// `kubectl apply -f crds/` and the copy the Helm chart installs from its `crds/` directory.
const CRD_DIRS: [&str; 2] = ["crds", "charts/prompt-defenders/crds"];

/// Static musl builds (the container images) use mimalloc: musl's allocator costs throughput.
#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "pd-operator", version, about = "Prompt Defenders operator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Choices that shape every scanner the operator creates (`run` and `render` share them, so a
/// preview shows what the cluster gets).
#[derive(clap::Args)]
struct SettingsArgs {
    /// Scanner image for policies that do not set `scanner.image`.
    #[arg(long, env = "PD_SCANNER_IMAGE", default_value = pd_operator::builders::DEFAULT_IMAGE)]
    scanner_image: String,
    /// Namespace whose pods may scrape scanner metrics (the NetworkPolicy admits it).
    #[arg(long, env = "PD_MONITORING_NAMESPACE", default_value = pd_operator::builders::MONITORING_NAMESPACE)]
    monitoring_namespace: String,
    /// Namespace whose RulePacks every ScanPolicy may bind and extend after its own
    /// namespace's (e.g. the operator's namespace holding a baseline pack).
    #[arg(long, env = "PD_SHARED_NAMESPACE")]
    shared_namespace: Option<String>,
    /// Let scanners watch their bundle ConfigMap through the API (new bundles in about a
    /// second, not kubelet's minute): `auto` reads the API server's addresses from Service and
    /// EndpointSlices `default/kubernetes` at start; `CIDR:PORT,...` gives them; `off` (the
    /// default) mounts no token and allows egress to DNS only.
    #[arg(
        long,
        env = "PD_API_SERVER_EGRESS",
        default_value = "off",
        value_name = "off|auto|CIDR:PORT,..."
    )]
    api_server_egress: ApiServerEgress,
    /// Scanners write the bundle hash they serve on their own Pod, and a ScanPolicy is `Ready`
    /// only once every ready scanner serves its bundle. On by default ("Ready means serving" is
    /// what users expect); `=false` turns it off. Takes effect only with `--api-server-egress`
    /// other than `off` (the scanners need a token); their Role gains `patch` on pods.
    #[arg(
        long,
        env = "PD_SCANNER_REPORTS_SERVING",
        value_name = "true|false",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    scanner_reports_serving: bool,
    /// Image prefixes a ScanPolicy's `scanner.image` must start with (comma-separated, e.g.
    /// `ghcr.io/prompt-defenders/`); a policy with another image is refused
    /// (`ImageNotAllowed`). Empty: any image.
    #[arg(
        long,
        env = "PD_SCANNER_IMAGE_ALLOW",
        value_delimiter = ',',
        value_name = "PREFIX,..."
    )]
    scanner_image_allow: Vec<String>,
}

impl SettingsArgs {
    /// `auto` is resolved by the caller (it needs a cluster) and passed in as `discovered`.
    fn settings(self, discovered: Vec<ApiEndpoint>) -> pd_operator::builders::Settings {
        let api_server = match self.api_server_egress {
            ApiServerEgress::Off => Vec::new(),
            ApiServerEgress::Auto => discovered,
            ApiServerEgress::Endpoints(e) => e,
        };
        pd_operator::builders::Settings {
            scanner_image: self.scanner_image,
            monitoring_namespace: self.monitoring_namespace,
            shared_namespace: self.shared_namespace.filter(|s| !s.is_empty()),
            api_server,
            report_serving: self.scanner_reports_serving,
            image_allowlist: self
                .scanner_image_allow
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the ScanPolicy, RulePack and Tenant controllers and the health/metrics server,
    /// against the cluster of the current kubeconfig or in-cluster service account, until
    /// SIGTERM/SIGINT.
    Run {
        /// Address of the health (`/healthz`, `/readyz`) and metrics (`/metrics`) server.
        #[arg(long, env = "PD_METRICS_ADDR", default_value = pd_operator::metrics::DEFAULT_ADDR)]
        metrics_addr: String,
        /// Namespace of the `pd-operator-leader` Lease the replicas compete for.
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        leader_election_namespace: String,
        /// Run the controllers without electing a leader (local runs, a single replica).
        #[arg(long)]
        no_leader_election: bool,
        /// Most objects each controller reconciles at once (0: unbounded).
        #[arg(long, env = "PD_MAX_CONCURRENT_RECONCILES", default_value_t = 4)]
        max_concurrent_reconciles: u16,
        /// Seconds between sums of the scanners' usage ledgers into Tenant status (and the
        /// quota grants written back); see docs/src/usage.md.
        #[arg(long, env = "PD_USAGE_INTERVAL", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        usage_interval: u64,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Write the CustomResourceDefinitions (tenants.yaml, rulepacks.yaml, scanpolicies.yaml)
    /// into every output directory: by default the repository's `crds/` and the Helm chart's
    /// `charts/prompt-defenders/crds/` (run from the repository root), which must stay identical.
    Crdgen {
        /// Output directory; repeat the flag to write several. Giving it replaces the defaults.
        #[arg(long = "dir", default_values = CRD_DIRS)]
        dirs: Vec<PathBuf>,
    },
    /// Print every object the operator would create for the ScanPolicies in the given files,
    /// as multi-document YAML.
    // `auto` needs a cluster to read, which render does not have: its help offers only the
    // forms it accepts (the flag is shared with `run`, whose help keeps `auto`).
    #[command(mut_arg("api_server_egress", |a| a
        .value_name("off|CIDR:PORT,...")
        .help("Let scanners watch their bundle ConfigMap through the API: `CIDR:PORT,...` gives \
               the API server's addresses; `off` (the default) mounts no token and allows egress \
               to DNS only. (`auto` is for `run`: render has no cluster to read them from.)")))]
    Render {
        /// Files or directories with Tenant, RulePack and ScanPolicy resources.
        #[arg(short = 'f', long = "file", required = true, value_delimiter = ',')]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

/// A usage error (unknown flag, malformed value, `render --api-server-egress auto`): 64, as
/// `pd-scanner` exits (BSD `EX_USAGE`), so scripts can tell a typo from a failed run (3).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print to stdout and succeed.
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Run {
            metrics_addr,
            leader_election_namespace,
            no_leader_election,
            max_concurrent_reconciles,
            usage_interval,
            settings,
        } => run(
            &metrics_addr,
            (!no_leader_election).then_some(leader_election_namespace),
            settings,
            max_concurrent_reconciles,
            std::time::Duration::from_secs(usage_interval),
        ),
        Command::Crdgen { dirs } => crdgen(&dirs),
        Command::Render { settings, .. } if settings.api_server_egress == ApiServerEgress::Auto => {
            eprintln!(
                "error: --api-server-egress auto reads the cluster's API server addresses, and \
                 render runs without a cluster: give them as CIDR:PORT,... (kubectl get \
                 endpointslices -n default -l kubernetes.io/service-name=kubernetes) or use off"
            );
            return ExitCode::from(EXIT_USAGE);
        }
        Command::Render { paths, settings } => {
            pd_operator::render::render(&paths, &settings.settings(Vec::new()))
                .and_then(|c| pd_operator::render::to_yaml(&c))
                .map(|yaml| print!("{yaml}"))
                .map_err(MainError::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // 3: an operational error, as in pd-scanner.
            ExitCode::from(3)
        }
    }
}

fn crdgen(dirs: &[PathBuf]) -> Result<(), MainError> {
    // Render once, so every directory gets byte-identical files.
    let files = pd_operator::crd::crds()
        .into_iter()
        .map(|(file, crd)| pd_operator::crd::crd_yaml(&crd).map(|yaml| (file, yaml)))
        .collect::<Result<Vec<_>, _>>()?;
    for dir in dirs {
        std::fs::create_dir_all(dir).map_err(|source| MainError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        for (file, yaml) in &files {
            let path = dir.join(file);
            std::fs::write(&path, yaml).map_err(|source| MainError::Write {
                path: path.clone(),
                source,
            })?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// `leader_namespace`: where the Lease lives; `None` disables leader election.
fn run(
    metrics_addr: &str,
    leader_namespace: Option<String>,
    settings: SettingsArgs,
    max_concurrent: u16,
    usage_interval: std::time::Duration,
) -> Result<(), MainError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(MainError::Runtime)?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(MainError::Connect)?;
        let discovered = if settings.api_server_egress == ApiServerEgress::Auto {
            let found = pd_operator::apiserver::discover(&client)
                .await
                .map_err(MainError::Discover)?;
            let list: Vec<String> = found.iter().map(ToString::to_string).collect();
            tracing::info!(endpoints = %list.join(","), "scanner egress to the API server");
            found
        } else {
            Vec::new()
        };
        let follow_api_server = settings.api_server_egress == ApiServerEgress::Auto;
        let settings = settings.settings(discovered);
        let listener = tokio::net::TcpListener::bind(metrics_addr)
            .await
            .map_err(|source| MainError::Listen {
                addr: metrics_addr.to_string(),
                source,
            })?;
        let elector =
            leader_namespace.map(|ns| pd_operator::leader::LeaderElector::new(client.clone(), ns));
        pd_operator::controller::run(
            client,
            listener,
            elector,
            settings,
            follow_api_server,
            max_concurrent,
            usage_interval,
        )
        .await
        .map_err(MainError::from)
    })
}
