//! `pd-scanner train`: train the learned stage and write it as a rule pack.

use std::io::BufReader;
use std::path::PathBuf;

use clap::Args;
use pd_scanner::classifier::train::{LabelDef, TrainOptions};
use pd_scanner::eval::{read_corpus, Fields};

use super::Result;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Labelled JSON Lines (`text`, `label`, `category`, `source`); repeat for several files.
    #[arg(long, short = 'i', required = true)]
    input: Vec<PathBuf>,
    /// Where to write the RulePack YAML.
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Name of the generated RulePack.
    #[arg(long, default_value = "learned")]
    pack_name: String,
    /// Name of the model (rules refer to it).
    #[arg(long, default_value = "prompt-attacks")]
    model_name: String,
    /// Model and pack version (default: the date).
    #[arg(long)]
    model_version: Option<String>,
    /// Training date written into the manifest (default: today, UTC).
    #[arg(long)]
    date: Option<String>,
    /// `NAME=CATEGORY[,CATEGORY...]`: a label and the attack categories it learns; repeat.
    #[arg(long = "label", default_values_t = [
        "jailbreak".to_string(),
        "injection=prompt_injection,exfiltration".to_string(),
        "code-injection=code_injection".to_string(),
    ])]
    labels: Vec<String>,
    /// Weight tables have 2^bits rows (2^bits × labels bytes, at most 192 KiB).
    #[arg(long, default_value_t = TrainOptions::default().bits)]
    bits: u8,
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = TrainOptions::default().l2)]
    l2: f64,
    #[arg(long, default_value_t = TrainOptions::default().learning_rate)]
    learning_rate: f64,
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    seed: u64,
    /// Folds of the grouped (by `--group-field`) cross-validation that picks the thresholds.
    #[arg(long, default_value_t = TrainOptions::default().folds)]
    folds: usize,
    /// Benign false-positive rate allowed, out of fold, summed over the labels.
    #[arg(long, default_value_t = TrainOptions::default().target_fpr)]
    target_fpr: f64,
    /// Weight of the generated rules (60 blocks on its own under the default thresholds).
    #[arg(long, default_value_t = 60)]
    weight: u32,
    #[arg(long, default_value = "source")]
    group_field: String,
    /// Attack categories that are negatives for every label (repeat; default: pii, secrets).
    #[arg(long = "negative-category", default_values_t = TrainOptions::default().negative_categories)]
    negative_categories: Vec<String>,
}

pub fn train(args: &TrainArgs) -> Result<u8> {
    let labels = args
        .labels
        .iter()
        .map(|l| LabelDef::parse(l))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let fields = Fields {
        group: args.group_field.clone(),
        ..Fields::default()
    };
    let mut examples = Vec::new();
    for path in &args.input {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let records = read_corpus(BufReader::new(file), &fields)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        examples.extend(records.iter().map(pd_scanner::crossval::example));
    }
    let date = args.date.clone().unwrap_or_else(today);
    let version = args.model_version.clone().unwrap_or_else(|| date.clone());
    let options = TrainOptions {
        bits: args.bits,
        epochs: args.epochs,
        l2: args.l2,
        learning_rate: args.learning_rate,
        seed: args.seed,
        folds: args.folds,
        target_fpr: args.target_fpr,
        negative_categories: args.negative_categories.clone(),
        ..TrainOptions::default()
    };
    let trained = pd_scanner::classifier::train::train(
        &args.model_name,
        &version,
        &date,
        &examples,
        &labels,
        &options,
    )?;
    let yaml = pd_scanner::classifier::pack::generated_pack(
        &args.pack_name,
        &trained,
        &labels,
        args.weight,
        &format!(
            "pd-scanner train {}",
            std::env::args().skip(2).collect::<Vec<_>>().join(" ")
        ),
    )?;
    std::fs::write(&args.out, yaml)
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    let m = &trained.manifest;
    eprintln!(
        "trained `{}` on {} records ({} attacks, {} benign) → {}",
        args.model_name,
        m.records,
        m.attacks,
        m.benign,
        args.out.display()
    );
    if let Some(cv) = &m.cross_validation {
        for l in &cv.labels {
            eprintln!(
                "  {:<12} threshold {:.3}: out-of-fold recall {:.3}, false-positive rate {:.4} ({} folds by {})",
                l.label, l.threshold, l.recall, l.false_positive_rate, cv.folds, cv.group_by
            );
        }
    }
    Ok(0)
}

/// Today's date (UTC) as `YYYY-MM-DD`, from the system clock (civil-from-days).
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
