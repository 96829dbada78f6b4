//! The command line: the top-level [`Cli`], the flags every command shares ([`LimitArgs`]) and
//! the dispatch to one module per subcommand. Each subcommand's module holds its own flags next
//! to the code that reads them, so adding a flag touches one file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use pd_scanner::limits::Limits;

/// `println!` that returns the write error instead of panicking on it (a closed pipe: `scan
/// … | head`), so `main` can end quietly. Defined before the modules below so they can use it.
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)
    };
}

mod audit;
mod bundle;
mod eval;
mod openapi;
mod scan;
mod schema;
mod serve;
mod synth;
mod test;
mod train;
mod webhook;

pub const EXIT_ERROR: u8 = 3;
pub const EXIT_USAGE: u8 = 64;
/// Standard output was closed early (see the crate documentation).
pub const EXIT_BROKEN_PIPE: u8 = 141;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Debug, Parser)]
#[command(name = "pd-scanner", version, about = "Prompt Defenders scanner", long_about = None)]
pub struct Cli {
    /// Rule packs and policies: YAML/JSON files or directories (RulePack / ScanPolicy resources
    /// or bare packs). Default: `config/samples/` when it exists, else the built-in samples.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        env = "PD_FILES",
        value_delimiter = ','
    )]
    files: Vec<PathBuf>,
    /// ScanPolicy to apply when several are loaded (`default` = all packs, default thresholds).
    #[arg(long, global = true, env = "PD_POLICY")]
    policy: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(subcommand)]
    command: Command,
}

/// Bounds on the rule-pack sources, for every command that reads them (see SECURITY.md,
/// "Limits, and why"). Defaults: `pd_scanner::limits::Limits::default()`.
#[derive(Debug, Args)]
struct LimitArgs {
    /// Largest rule-pack file (or ConfigMap value), in bytes; checked before it is read.
    #[arg(long, global = true, env = "PD_MAX_PACK_BYTES", default_value_t = Limits::default().max_file_bytes)]
    max_pack_bytes: u64,
    /// Most rules one pack may define.
    #[arg(long, global = true, env = "PD_MAX_PACK_RULES", default_value_t = Limits::default().max_pack_rules)]
    max_pack_rules: usize,
    /// Most rules a compiled bundle may hold.
    #[arg(long, global = true, env = "PD_MAX_BUNDLE_RULES", default_value_t = Limits::default().max_bundle_rules)]
    max_bundle_rules: usize,
    /// Longest regex source, in bytes.
    #[arg(long, global = true, env = "PD_MAX_REGEX_BYTES", default_value_t = Limits::default().max_regex_bytes)]
    max_regex_bytes: usize,
    /// Compiled size limit of one regex, in bytes.
    #[arg(long, global = true, env = "PD_MAX_REGEX_COMPILED_BYTES", default_value_t = Limits::default().max_regex_compiled_bytes)]
    max_regex_compiled_bytes: usize,
    /// Compiled size limit of a bundle's regexes and keyword automaton, in bytes.
    #[arg(long, global = true, env = "PD_MAX_BUNDLE_COMPILED_BYTES", default_value_t = Limits::default().max_bundle_compiled_bytes)]
    max_bundle_compiled_bytes: usize,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_file_bytes: self.max_pack_bytes,
            max_pack_rules: self.max_pack_rules,
            max_bundle_rules: self.max_bundle_rules,
            max_regex_bytes: self.max_regex_bytes,
            max_regex_compiled_bytes: self.max_regex_compiled_bytes,
            max_bundle_compiled_bytes: self.max_bundle_compiled_bytes,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scan one prompt and print the result as JSON (exit 0 allow, 1 warn, 2 block).
    Scan(scan::ScanArgs),
    /// Run the tests embedded in every loaded rule pack.
    Test(test::TestArgs),
    /// Measure detection on a labelled JSON Lines corpus.
    Eval(eval::EvalArgs),
    /// Print the JSON schema of the rule-pack format.
    Schema,
    /// Serve the scan API (HTTP) with hot reload, audit records and metrics.
    Serve(Box<serve::ServeArgs>),
    /// Audit-log tools.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Print the OpenAPI document of the scan API.
    Openapi,
    /// Webhook signature tools (the receiving side of `serve --webhooks`).
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
    /// Print the policy's compiled-and-checked bundle (`ScanBundle` JSON): one file a scanner
    /// can serve with `-f`.
    Bundle,
    /// Train the learned stage on labelled JSON Lines and write it as a rule pack (a model plus
    /// one `classifier` rule per label). Deterministic for a given seed and input.
    Train(train::TrainArgs),
    /// Print distinct synthetic prompts as JSON Lines (`text`, `label`), deterministic for a
    /// seed: input for `eval --warm-up` and load runs that must not repeat texts.
    Synth(synth::SynthArgs),
}

/// Runs the parsed command; the exit code it returns is part of the interface (crate docs).
pub fn run(cli: Cli) -> Result<u8> {
    let limits = cli.limits.limits();
    match cli.command {
        Command::Scan(args) => scan::scan(&cli.files, cli.policy.as_deref(), &limits, args),
        Command::Test(args) => test::test(&cli.files, cli.policy.as_deref(), &limits, args),
        Command::Eval(args) => eval::eval(&cli.files, cli.policy.as_deref(), &limits, args),
        Command::Serve(args) => serve::serve(cli.files, cli.policy, limits, *args),
        Command::Audit(audit::AuditCommand::Verify { file, anchor }) => {
            audit::audit_verify(&file, anchor.as_deref())
        }
        Command::Webhook(cmd) => webhook::webhook(cmd),
        Command::Synth(args) => synth::synth(&args),
        Command::Train(args) => train::train(&args),
        Command::Bundle => bundle::bundle(&cli.files, cli.policy.as_deref(), &limits),
        Command::Openapi => openapi::openapi(),
        Command::Schema => schema::schema(),
    }
}

/// Says on stderr which loaded packs the policy does not use: `-f config/samples/ -f mine.yaml`
/// selects the samples' policy, which binds only its own packs, and a scan that silently ignores
/// the pack a user just wrote looks like a pack that matches nothing. `test` says it too: its
/// "N passed" is about each pack alone, not about what the policy would serve.
fn note_unbound_packs(loaded: &pd_scanner::load::Loaded, pack: &pd_scanner::compile::CompiledPack) {
    use pd_scanner::serve::reload::{unused_packs, unused_packs_warning};
    let unused = unused_packs(loaded, pack);
    if !unused.is_empty() {
        eprintln!("pd-scanner: note: {}", unused_packs_warning(pack, &unused));
    }
}

/// The first `max` characters of `s`, with `…` when cut: keeps report lines short.
fn excerpt(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut e: String = s.chars().take(max).collect();
    e.push('…');
    e
}
