//! `pd-scanner scan`: scan one prompt and print the result as JSON.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use clap::Args;
use pd_scanner::engine::InputHasher;
use pd_scanner::limits::Limits;

use super::{note_unbound_packs, Result, EXIT_USAGE};

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The prompt (several words are joined with spaces). Omit it or pass `-` to read stdin.
    text: Vec<String>,
    /// File holding the HMAC key for `input_hash` (default: $PD_HMAC_KEY, else a random key for
    /// this run only).
    #[arg(long, env = "PD_HMAC_KEY_FILE")]
    hmac_key_file: Option<PathBuf>,
    /// Largest prompt accepted, in bytes.
    #[arg(long, env = "PD_MAX_PROMPT_BYTES", default_value_t = 256 * 1024)]
    max_bytes: usize,
    /// Pretty-print the JSON.
    #[arg(long)]
    pretty: bool,
    /// Scan an empty (or all-whitespace) prompt instead of refusing it as a usage error: for
    /// scripts that pipe text which may be empty and want its verdict (`allow`).
    #[arg(long)]
    allow_empty: bool,
}

/// `scan` was given no prompt and its standard input is a terminal: rather than wait for
/// typing nobody may know is expected, say how to give one.
fn usage_at_a_terminal() -> u8 {
    let mut cli = <super::Cli as clap::CommandFactory>::command();
    cli.build();
    let usage = cli
        .find_subcommand_mut("scan")
        .map(|c| c.render_usage().to_string())
        .unwrap_or_default();
    eprintln!(
        "pd-scanner: error: no prompt to scan: pass it as arguments (pd-scanner scan 'TEXT'), pipe \
         it on standard input, or pass `-` to type it here (end with Ctrl-D)\n\n{usage}\n\nFor \
         more information, try 'pd-scanner scan --help'."
    );
    EXIT_USAGE
}

/// The `input_hash` key: the key file, else $PD_HMAC_KEY, else a random key for this run only
/// (its hashes then match no other run's).
fn hasher(key_file: Option<&PathBuf>) -> Result<InputHasher> {
    if let Some(path) = key_file {
        let key = std::fs::read(path)
            .map_err(|e| format!("cannot read HMAC key file {}: {e}", path.display()))?;
        let key = key.trim_ascii();
        return Ok(InputHasher::new(key).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    match std::env::var("PD_HMAC_KEY") {
        Ok(k) if !k.is_empty() => Ok(InputHasher::new(k.as_bytes())?),
        _ => Ok(InputHasher::ephemeral()),
    }
}

pub fn scan(
    files: &[PathBuf],
    policy: Option<&str>,
    limits: &Limits,
    args: ScanArgs,
) -> Result<u8> {
    let text = if args.text.is_empty() || args.text == ["-"] {
        if std::io::stdin().is_terminal() {
            if args.text.is_empty() {
                return Ok(usage_at_a_terminal());
            }
            eprintln!("pd-scanner: reading the prompt from standard input; end it with Ctrl-D");
        }
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(args.max_bytes as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading stdin: {e}"))?;
        if bytes.len() > args.max_bytes {
            return Err(format!(
                "the prompt is over the {}-byte limit (--max-bytes)",
                args.max_bytes
            )
            .into());
        }
        String::from_utf8(bytes).map_err(|e| {
            format!(
                "the prompt on stdin is not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            )
        })?
    } else {
        args.text.join(" ")
    };
    if text.len() > args.max_bytes {
        return Err(format!(
            "the prompt is over the {}-byte limit (--max-bytes)",
            args.max_bytes
        )
        .into());
    }
    if text.trim().is_empty() && !args.allow_empty {
        eprintln!("pd-scanner: error: no prompt to scan: pass it as arguments, or pipe it on standard input (--allow-empty scans an empty prompt)");
        return Ok(EXIT_USAGE);
    }
    let hasher = hasher(args.hmac_key_file.as_ref())?;
    let (loaded, pack) = pd_scanner::bundle::build_loaded(files, policy, limits)?;
    note_unbound_packs(&loaded, &pack);
    let result = pack.scan(&text, &hasher);
    let json = if args.pretty {
        serde_json::to_string_pretty(&result)?
    } else {
        serde_json::to_string(&result)?
    };
    outln!("{json}")?;
    Ok(result.verdict.exit_code())
}
