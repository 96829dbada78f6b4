//! `pd-scanner`: scan prompts, test rule packs, evaluate them on a labelled corpus.
//!
//! Exit codes are part of the interface, so scripts and CI can branch on them:
//! `scan` exits 0 allow, 1 warn, 2 block; `test` exits 0 when every test passes, 1 otherwise;
//! 3 means an operational error (unreadable or invalid pack, bad input); 64 a usage error;
//! 141 (128 + SIGPIPE, what a shell reports for `yes | head`) that standard output was closed
//! before everything was written, which is said nowhere else: the reader wanted no more.

use std::process::ExitCode;

use clap::Parser;

mod alloc;
mod cli;

use cli::{Cli, EXIT_BROKEN_PIPE, EXIT_ERROR, EXIT_USAGE};

fn main() -> ExitCode {
    alloc::tune();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) if broken_pipe(&*e) => ExitCode::from(EXIT_BROKEN_PIPE),
        Err(e) => {
            eprintln!("pd-scanner: error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Whether `e` (or an error it wraps) is a write to a closed pipe.
fn broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        let kind = e
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                e.downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            });
        if kind == Some(std::io::ErrorKind::BrokenPipe) {
            return true;
        }
        next = e.source();
    }
    false
}
