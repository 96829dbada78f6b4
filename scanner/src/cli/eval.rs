//! `pd-scanner eval`: measure detection (and speed) on a labelled JSON Lines corpus.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use pd_scanner::bundle::{build, load_sources_with, pack_set, select_policy};
use pd_scanner::classifier::train::TrainOptions;
use pd_scanner::compile::CompiledPack;
use pd_scanner::eval::{evaluate, read_corpus, read_texts, Fields, ItemResult, Record, Report};
use pd_scanner::limits::Limits;

use super::{excerpt, Result};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// JSON Lines corpus, one record per line.
    #[arg(long, short = 'i')]
    input: PathBuf,
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Values: attack/benign, 1/0, true/false.
    #[arg(long, default_value = "label")]
    label_field: String,
    #[arg(long, default_value = "category")]
    category_field: String,
    #[arg(long, default_value = "id")]
    id_field: String,
    /// Write per-item results (id, label, verdict, score, rules) as JSON Lines.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// List up to N misclassified items (id, rules, start of the text).
    #[arg(long, default_value_t = 0)]
    show_errors: usize,
    /// JSON Lines texts (same text field; labels not needed) to scan, untimed, before the
    /// timed pass over `--input`, so the figures describe a running scanner meeting new text.
    /// Must share no text with `--input`.
    #[arg(long)]
    warm_up: Option<PathBuf>,
    /// Run every rule on every text (no prefilter, no gap checks): slower, and the results
    /// must be identical; a check that the prefilter changes nothing on your corpus.
    #[arg(long)]
    no_prefilter: bool,
    /// Cross-source evaluation: retrain this model (named in a loaded pack) without each fold
    /// of `--input` before scanning that fold, so figures are for text it never saw.
    #[arg(long)]
    retrain: Option<String>,
    /// Folds for `--retrain`; records of one `--group-field` value stay in one fold.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    #[arg(long, default_value = "source")]
    group_field: String,
    /// Extra labelled JSON Lines always in the training data of `--retrain`, never scanned.
    #[arg(long)]
    train: Vec<PathBuf>,
    /// Also time the bare baseline (one RegexSet of the bundle's regex rules + one
    /// Aho–Corasick DFA of its keywords, in a fresh process state warmed on the same warm-up
    /// texts) on the same texts, and print the engine's throughput as a share of it.
    #[arg(long)]
    baseline: bool,
}

pub fn eval(
    files: &[PathBuf],
    policy: Option<&str>,
    limits: &Limits,
    args: EvalArgs,
) -> Result<u8> {
    let fields = Fields {
        text: args.text_field.clone(),
        label: args.label_field.clone(),
        category: args.category_field.clone(),
        id: args.id_field.clone(),
        group: args.group_field.clone(),
    };
    let records = read_corpus(open(&args.input)?, &fields)
        .map_err(|e| format!("{}: {e}", args.input.display()))?;
    let warm_up = match &args.warm_up {
        Some(path) => {
            read_texts(open(path)?, &fields.text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    let (report, items) = match &args.retrain {
        Some(model) => cross_source(files, policy, limits, &args, &fields, &records, model)?,
        None => timed_pass(files, policy, limits, &args, &records, &warm_up)?,
    };
    if let Some(path) = &args.out {
        write_items(path, &items)?;
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(std::io::stdout().lock(), "{report}")?;
    }
    print_errors(&records, &items, args.show_errors)?;
    Ok(0)
}

/// A corpus file opened for reading, its path in the error.
fn open(path: &Path) -> std::result::Result<BufReader<std::fs::File>, String> {
    std::fs::File::open(path)
        .map(BufReader::new)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// `--retrain`: detection of a model retrained without each fold, on that fold. Speed is not
/// measured here (every fold scans with a different model), hence the flags it refuses.
fn cross_source(
    files: &[PathBuf],
    policy: Option<&str>,
    limits: &Limits,
    args: &EvalArgs,
    fields: &Fields,
    records: &[Record],
    model: &str,
) -> Result<(Report, Vec<ItemResult>)> {
    if args.warm_up.is_some() || args.baseline || args.no_prefilter {
        return Err(
            "--retrain measures detection only; drop --warm-up, --baseline and --no-prefilter"
                .into(),
        );
    }
    let loaded = load_sources_with(files, limits)?;
    let policy = select_policy(&loaded, policy)?;
    let mut extra = Vec::new();
    for path in &args.train {
        let r = read_corpus(open(path)?, fields).map_err(|e| format!("{}: {e}", path.display()))?;
        extra.extend(r.iter().map(pd_scanner::crossval::example));
    }
    let out = pd_scanner::crossval::cross_source(
        &pack_set(&loaded),
        &policy,
        model,
        records,
        &extra,
        args.folds,
        &TrainOptions::default(),
    )?;
    if !args.json {
        outln!(
            "cross-source: model `{model}` retrained {} times, each time without one fold of {} (grouped by `{}`), plus {} records always in training; rules unchanged; policy {}",
            args.folds.max(2),
            args.input.display(),
            fields.group,
            extra.len(),
            policy.name
        )?;
    }
    Ok(out)
}

/// The bundle as built, over the whole corpus after the warm-up texts: detection and speed,
/// with the bare baseline alongside when asked for.
fn timed_pass(
    files: &[PathBuf],
    policy: Option<&str>,
    limits: &Limits,
    args: &EvalArgs,
    records: &[Record],
    warm_up: &[String],
) -> Result<(Report, Vec<ItemResult>)> {
    let mut pack = build(files, policy, limits)?;
    if args.no_prefilter {
        pack = pack.without_prefilter();
    }
    // Span regexes compile on first use; a serving scanner compiles them before a bundle
    // goes live, so the timed pass should not pay for that either.
    pack.warm_up();
    let out = evaluate(&pack, records, warm_up).map_err(|e| match &args.warm_up {
        Some(w) => format!("{} (warm-up {}): {e}", args.input.display(), w.display()),
        None => format!("{}: {e}", args.input.display()),
    })?;
    if !args.json {
        outln!(
            "bundle {} {} ({} rules), policy {}",
            pack.pack.name,
            pack.pack.hash,
            pack.rule_count(),
            pack.policy.name
        )?;
    }
    if args.baseline {
        print_baseline(&pack, records, warm_up, out.0.speed.items_per_second)?;
    }
    Ok(out)
}

/// `--baseline`: times the bare pass over the same texts and warm-up, so the engine's
/// throughput can be read as a share of the fastest a plain regex + keyword scan could go.
fn print_baseline(
    pack: &CompiledPack,
    records: &[Record],
    warm_up: &[String],
    engine_items_per_second: f64,
) -> Result<()> {
    let bare = pd_scanner::baseline::BarePass::new(pack)?;
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    let b = pd_scanner::eval::time_bare_pass(&bare, &texts, warm_up);
    outln!(
        "bare baseline    {:.0} items/s, {:.2} MB/s; p50 {:.1} us, p99 {:.1} us, max {:.1} us (same texts, same warm-up)",
        b.items_per_second, b.megabytes_per_second, b.p50_us, b.p99_us, b.max_us
    )?;
    if b.items_per_second > 0.0 {
        outln!(
            "engine / bare    {:.0}%",
            100.0 * engine_items_per_second / b.items_per_second
        )?;
    }
    Ok(())
}

/// `--out`: one JSON line per item.
fn write_items(path: &Path, items: &[ItemResult]) -> Result<()> {
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?,
    );
    for i in items {
        serde_json::to_writer(&mut w, i)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

/// `--show-errors`: the first `max` false negatives and positives, in corpus order.
fn print_errors(records: &[Record], items: &[ItemResult], max: usize) -> Result<()> {
    let wrong = records
        .iter()
        .zip(items)
        .filter(|(_, i)| i.attack != i.detected());
    for (r, i) in wrong.take(max) {
        let text = r.text.as_str();
        outln!(
            "{} line {} {} [{}] score {} {:?}",
            if i.attack { "FN" } else { "FP" },
            i.line,
            i.category.as_deref().unwrap_or_default(),
            i.rules.join(","),
            i.score,
            excerpt(text, 160)
        )?;
    }
    Ok(())
}
