//! `pd-scanner synth`: print distinct synthetic prompts as JSON Lines.

use std::io::Write;

use clap::Args;

use super::Result;

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Number of prompts.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Seed; different seeds give disjoint sets in practice (checked by `eval --warm-up`).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of prompts with an attack technique spliced in (labelled `attack`).
    #[arg(long, default_value_t = 0.0)]
    attacks: f64,
}

pub fn synth(args: &SynthArgs) -> Result<u8> {
    if !(0.0..=1.0).contains(&args.attacks) {
        return Err("--attacks must be between 0 and 1".into());
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (text, attack) in pd_scanner::synth::labelled(args.seed, args.attacks).take(args.count) {
        let label = if attack { "attack" } else { "benign" };
        serde_json::to_writer(&mut out, &serde_json::json!({"text": text, "label": label}))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(0)
}
