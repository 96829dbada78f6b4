//! `pd-scanner webhook verify|sign`: the receiving side of `serve --webhooks`.

use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;

use super::Result;

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Check a delivery read from stdin (the exact body bytes) against its X-PD-Timestamp and
    /// X-PD-Signature headers: exit 0 when valid and fresh, 1 otherwise.
    Verify {
        /// File holding the signing key (as mounted from the Secret).
        #[arg(long)]
        key_file: PathBuf,
        /// The X-PD-Timestamp header (Unix seconds).
        #[arg(long)]
        timestamp: String,
        /// The X-PD-Signature header (`sha256=<hex>[,sha256=<hex>]`).
        #[arg(long)]
        signature: String,
        /// Largest accepted distance between the timestamp and now, in seconds.
        #[arg(long, default_value_t = 300)]
        tolerance_secs: u64,
    },
    /// Sign a body read from stdin as the scanner does, and print the two headers.
    Sign {
        /// Signing key files: current, then optionally previous (both signatures are printed).
        #[arg(long = "key-file", required = true)]
        key_files: Vec<PathBuf>,
        /// Unix seconds (default: now).
        #[arg(long)]
        timestamp: Option<u64>,
    },
}

/// `pd-scanner webhook verify|sign`.
pub fn webhook(cmd: WebhookCommand) -> Result<u8> {
    use pd_scanner::serve::webhook::{read_key, sign};
    let read_key =
        |p: &PathBuf| read_key(p).map_err(|e| format!("signing key file {}: {e}", p.display()));
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body)?;
    match cmd {
        WebhookCommand::Verify {
            key_file,
            timestamp,
            signature,
            tolerance_secs,
        } => {
            let key = read_key(&key_file)?;
            match sign::verify(
                &key,
                &timestamp,
                &signature,
                &body,
                sign::unix_now(),
                tolerance_secs,
            ) {
                Ok(()) => {
                    println!("OK: the signature matches and the timestamp is fresh");
                    Ok(0)
                }
                Err(e) => {
                    println!("INVALID: {e}");
                    Ok(1)
                }
            }
        }
        WebhookCommand::Sign {
            key_files,
            timestamp,
        } => {
            let keys = key_files
                .iter()
                .map(read_key)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let ts = timestamp.unwrap_or_else(sign::unix_now).to_string();
            println!("X-PD-Timestamp: {ts}");
            println!("X-PD-Signature: {}", sign::header(&keys, &ts, &body));
            Ok(0)
        }
    }
}
