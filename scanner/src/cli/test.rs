//! `pd-scanner test`: run the tests embedded in every loaded rule pack.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use pd_scanner::bundle::{load_sources_with, pack_set, select_policy};
use pd_scanner::compile::compile_checked;
use pd_scanner::limits::Limits;
use pd_scanner::pack::PackTest;
use pd_scanner::testing::{run_pack_tests_told, PackReport};

use super::{excerpt, note_unbound_packs, Result};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
    /// List passing tests too.
    #[arg(short, long)]
    verbose: bool,
}

pub fn test(
    files: &[PathBuf],
    policy: Option<&str>,
    limits: &Limits,
    args: TestArgs,
) -> Result<u8> {
    let loaded = load_sources_with(files, limits)?;
    let packs = pack_set(&loaded);
    let tell = |e: &pd_scanner::compile::CompileError| pd_scanner::bundle::explain(e, &loaded);
    let reports: Vec<_> = packs
        .keys()
        .map(|n| run_pack_tests_told(&packs, n, limits, &tell))
        .collect();
    let ok = reports.iter().all(|r| r.ok());
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&reports)?)?;
        return Ok(u8::from(!ok));
    }
    let mut out = std::io::stdout().lock();
    let (mut passed, mut failed) = (0, 0);
    for r in &reports {
        let tests = packs.get(&r.pack).map(|s| &s.tests[..]).unwrap_or_default();
        print_pack(&mut out, r, tests, args.verbose)?;
        if r.error.is_some() {
            failed += 1;
        } else {
            passed += r.passed();
            failed += r.failed();
        }
    }
    if packs.len() > 1 || loaded.policies.is_empty() || policy.is_some() {
        // Also check that what will be served compiles, not just each pack alone: the check
        // `serve` makes on every load.
        let policy = select_policy(&loaded, policy)?;
        match compile_checked(&packs, policy.clone(), limits) {
            Ok(compiled) => note_unbound_packs(&loaded, &compiled),
            Err(e) => {
                // A pack that failed above fails the policy with the very same text: say it
                // once, the report above already counts it.
                let text = tell(&e);
                if !reports
                    .iter()
                    .any(|r| r.error.as_deref() == Some(text.as_str()))
                {
                    writeln!(out, "FAIL policy {}: {text}", policy.name)?;
                    failed += 1;
                }
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(u8::from(!ok || failed > 0))
}

/// One pack's part of the text report: its summary line, lint notes, and each failing test
/// (every test with `--verbose`) with its input's start and what the engine decided.
fn print_pack(
    out: &mut impl Write,
    r: &PackReport,
    tests: &[PackTest],
    verbose: bool,
) -> std::io::Result<()> {
    if let Some(e) = &r.error {
        return writeln!(out, "FAIL pack {}: does not compile\n{e}", r.pack);
    }
    writeln!(
        out,
        "{} pack {} — {} passed, {} failed  {}",
        if r.ok() { "ok  " } else { "FAIL" },
        r.pack,
        r.passed(),
        r.failed(),
        r.hash.as_deref().unwrap_or_default()
    )?;
    for lint in &r.lints {
        writeln!(out, "  note: {lint}")?;
    }
    for (o, t) in r.outcomes.iter().zip(tests) {
        if o.passed && !verbose {
            continue;
        }
        writeln!(
            out,
            "  {} {} {:?} -> {} (score {}, rules [{}])",
            if o.passed { "ok  " } else { "FAIL" },
            o.name,
            excerpt(&t.input, 70),
            o.verdict,
            o.score,
            o.matched.join(", ")
        )?;
        for f in &o.failures {
            writeln!(out, "       {f}")?;
        }
    }
    Ok(())
}
