//! Measuring a bundle against a labelled corpus (JSON Lines): confusion matrix, precision,
//! recall, F1, false-positive rate, per-category recall, and throughput and latency measured on
//! text the scanner has not seen before.
//!
//! A prediction is positive when the verdict enforcement reaches is not `allow` — a warning is a
//! detection, since PII and secrets inside ordinary requests are meant to warn or redact.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::baseline::BarePass;
use crate::compile::CompiledPack;
use crate::engine::InputHasher;
use crate::verdict::Verdict;

/// Which JSON fields hold what.
#[derive(Debug, Clone)]
pub struct Fields {
    pub text: String,
    pub label: String,
    pub category: String,
    pub id: String,
    /// Cross-validation group (records of one group are held out together).
    pub group: String,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            text: "text".into(),
            label: "label".into(),
            category: "category".into(),
            id: "id".into(),
            group: "source".into(),
        }
    }
}

#[derive(Debug, Error)]
pub enum EvalError {
    #[error("reading the corpus: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {message}")]
    Record { line: usize, message: String },
    #[error("the corpus has no records")]
    Empty,
    /// Timing text the scanner has already seen would measure its caches, not its speed.
    #[error("{shared} texts of the input also occur in the warm-up set; timed texts must be new to the scanner")]
    Overlap { shared: usize },
}

/// Per-item result, written by `--out`.
#[derive(Debug, Clone, Serialize)]
pub struct ItemResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub line: usize,
    pub attack: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub verdict: Verdict,
    pub score: u32,
    pub rules: Vec<String>,
    /// Whether a rule of the learned stage (`classifier`) fired, and whether any other rule did.
    pub by_classifier: bool,
    pub by_rules: bool,
    pub latency_us: u64,
}

impl ItemResult {
    pub fn detected(&self) -> bool {
        self.verdict != Verdict::Allow
    }
}

/// Hits per category.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CategoryCount {
    pub total: usize,
    pub detected: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub items: usize,
    pub true_positives: usize,
    pub false_negatives: usize,
    pub false_positives: usize,
    pub true_negatives: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub false_positive_rate: f64,
    pub accuracy: f64,
    /// Recall on attacks, and detection rate on benign items, by category field.
    pub by_category: BTreeMap<String, CategoryCount>,
    /// How often each rule fired on attack and on benign items.
    pub rule_hits: BTreeMap<String, (usize, usize)>,
    /// Which stage caught the detected attacks, and which raised the false positives.
    pub detected_by: StageCounts,
    pub false_positives_by: StageCounts,
    /// The timed pass: every item scanned once, after the warm-up texts.
    pub speed: Speed,
}

/// Items by the stages whose rules fired on them.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageCounts {
    pub rules_only: usize,
    pub classifier_only: usize,
    pub both: usize,
}

impl StageCounts {
    fn add(&mut self, i: &ItemResult) {
        match (i.by_rules, i.by_classifier) {
            (true, false) => self.rules_only += 1,
            (false, true) => self.classifier_only += 1,
            (true, true) => self.both += 1,
            (false, false) => {}
        }
    }
}

/// One labelled record of a corpus.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: Option<String>,
    /// 1-based line in the corpus file.
    pub line: usize,
    pub text: String,
    pub attack: bool,
    pub category: Option<String>,
    pub group: Option<String>,
}

/// Reads a labelled JSON Lines corpus (blank lines are skipped).
pub fn read_corpus(input: impl BufRead, fields: &Fields) -> Result<Vec<Record>, EvalError> {
    let mut records = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line_no = i + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| EvalError::Record {
            line: line_no,
            message,
        };
        let v: Value =
            serde_json::from_str(&line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let text = v
            .get(&fields.text)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("no string field `{}`", fields.text)))?;
        let attack = parse_label(v.get(&fields.label)).ok_or_else(|| {
            bad(format!(
                "field `{}` must be attack/benign, 1/0 or true/false",
                fields.label
            ))
        })?;
        let string = |field: &str| v.get(field).and_then(Value::as_str).map(str::to_string);
        records.push(Record {
            id: string(&fields.id),
            line: line_no,
            text: text.to_string(),
            attack,
            category: string(&fields.category),
            group: string(&fields.group),
        });
    }
    if records.is_empty() {
        return Err(EvalError::Empty);
    }
    Ok(records)
}

/// Reads the `field` of every record of a JSON Lines file (labels are not needed): the texts a
/// warm-up pass scans.
pub fn read_texts(input: impl BufRead, field: &str) -> Result<Vec<String>, EvalError> {
    let mut texts = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| EvalError::Record {
            line: i + 1,
            message,
        };
        let v: Value =
            serde_json::from_str(&line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let text = v
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("no string field `{field}`")))?;
        texts.push(text.to_string());
    }
    Ok(texts)
}

/// Scans every record and scores the bundle.
///
/// `warm_up` texts are scanned first, untimed; then each record is scanned once and timed.
/// A scanner's automata build state as they meet new text, so a figure measured on text the
/// process has already scanned says nothing about real traffic. The timed texts must therefore
/// not occur in `warm_up` ([`EvalError::Overlap`]), and nothing is scanned twice.
pub fn evaluate(
    pack: &CompiledPack,
    records: &[Record],
    warm_up: &[String],
) -> Result<(Report, Vec<ItemResult>), EvalError> {
    if records.is_empty() {
        return Err(EvalError::Empty);
    }
    let seen: HashSet<&str> = warm_up.iter().map(String::as_str).collect();
    let shared = records
        .iter()
        .filter(|r| seen.contains(r.text.as_str()))
        .count();
    if shared > 0 {
        return Err(EvalError::Overlap { shared });
    }
    let hasher = InputHasher::ephemeral();
    let learned = pack.classifier_rule_ids();
    let (results, speed) = timed(warm_up, records.iter().map(|r| r.text.as_str()), |t| {
        pack.scan(t, &hasher)
    });
    let mut items = Vec::with_capacity(records.len());
    for (r, (result, took)) in records.iter().zip(results) {
        items.push(ItemResult {
            id: r.id.clone(),
            line: r.line,
            attack: r.attack,
            category: r.category.clone(),
            verdict: result.effective_verdict(),
            score: result.score,
            rules: result.rule_ids().map(str::to_string).collect(),
            by_classifier: result.rule_ids().any(|r| learned.contains(r)),
            by_rules: result.rule_ids().any(|r| !learned.contains(r)),
            latency_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        });
    }
    let mut report = report_of(&items);
    report.speed = speed;
    Ok((report, items))
}

/// Times [`BarePass`] on `texts` after running it over `warm_up` (the same protocol as
/// [`evaluate`]), so the engine's figure can be put as a share of it.
pub fn time_bare_pass(bare: &BarePass, texts: &[&str], warm_up: &[String]) -> Speed {
    timed(warm_up, texts.iter().copied(), |t| bare.run(t)).1
}

/// The protocol every speed figure is measured with: `run` over each warm-up text, untimed,
/// then over each text once, timed. Returns each result with its time, and the figures.
fn timed<'a, T>(
    warm_up: &[String],
    texts: impl Iterator<Item = &'a str>,
    mut run: impl FnMut(&str) -> T,
) -> (Vec<(T, Duration)>, Speed) {
    for t in warm_up {
        std::hint::black_box(run(t));
    }
    let mut results = Vec::new();
    let mut latencies = Vec::new();
    for t in texts {
        let t0 = Instant::now();
        let result = std::hint::black_box(run(t));
        let took = t0.elapsed();
        latencies.push((took, t.len()));
        results.push((result, took));
    }
    (results, Speed::new(&latencies, warm_up.len()))
}

/// Throughput and latency of one timed pass (one thread, scan time only).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Speed {
    /// Texts scanned, untimed, before the timed pass.
    pub warmed_on: usize,
    pub items: usize,
    pub bytes: usize,
    /// Sum of the per-item scan times.
    pub scan_seconds: f64,
    pub items_per_second: f64,
    pub megabytes_per_second: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// The same for the items of at most 4 KiB (chat-sized prompts), the latency target's scope.
    pub small_items: usize,
    pub small_p99_us: f64,
    pub small_max_us: f64,
}

impl Speed {
    /// Throughput is items over the sum of their scan times: the loop's own work (building the
    /// per-item results) is not the scanner's.
    fn new(latencies: &[(Duration, usize)], warmed_on: usize) -> Speed {
        let secs: f64 = latencies.iter().map(|(d, _)| d.as_secs_f64()).sum();
        let bytes = latencies.iter().map(|(_, n)| n).sum();
        let sorted = |small_only: bool| {
            let mut us: Vec<f64> = latencies
                .iter()
                .filter(|(_, n)| !small_only || *n <= 4096)
                .map(|(d, _)| d.as_secs_f64() * 1e6)
                .collect();
            us.sort_by(f64::total_cmp);
            us
        };
        let (us, small) = (sorted(false), sorted(true));
        // Nearest rank: the smallest value with at least p of the items at or below it.
        let pct = |us: &[f64], p: f64| -> f64 {
            if us.is_empty() {
                return 0.0;
            }
            let rank = ((p * us.len() as f64).ceil() as usize).clamp(1, us.len());
            us[rank - 1]
        };
        Speed {
            warmed_on,
            items: latencies.len(),
            bytes,
            scan_seconds: secs,
            items_per_second: if secs > 0.0 {
                latencies.len() as f64 / secs
            } else {
                0.0
            },
            megabytes_per_second: if secs > 0.0 {
                bytes as f64 / secs / 1e6
            } else {
                0.0
            },
            p50_us: pct(&us, 0.50),
            p90_us: pct(&us, 0.90),
            p99_us: pct(&us, 0.99),
            max_us: pct(&us, 1.0),
            small_items: small.len(),
            small_p99_us: pct(&small, 0.99),
            small_max_us: pct(&small, 1.0),
        }
    }
}

fn parse_label(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64()? {
            1 => Some(true),
            0 => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "attack" | "1" | "true" | "malicious" | "injection" => Some(true),
            "benign" | "0" | "false" | "safe" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The report over already-scanned items (speed left at zero).
pub fn report_of(items: &[ItemResult]) -> Report {
    let count = |attack: bool, detected: bool| {
        items
            .iter()
            .filter(|i| i.attack == attack && i.detected() == detected)
            .count()
    };
    let (tp, fn_, fp, tn) = (
        count(true, true),
        count(true, false),
        count(false, true),
        count(false, false),
    );
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    let mut by_category: BTreeMap<String, CategoryCount> = BTreeMap::new();
    let mut rule_hits: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut detected_by, mut false_positives_by) =
        (StageCounts::default(), StageCounts::default());
    for i in items {
        match (i.attack, i.detected()) {
            (true, true) => detected_by.add(i),
            (false, true) => false_positives_by.add(i),
            _ => {}
        }
        let key = i
            .category
            .clone()
            .unwrap_or_else(|| if i.attack { "attack" } else { "benign" }.to_string());
        let c = by_category.entry(key).or_default();
        c.total += 1;
        c.detected += usize::from(i.detected());
        for r in &i.rules {
            let e = rule_hits.entry(r.clone()).or_default();
            if i.attack {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }
    Report {
        items: items.len(),
        true_positives: tp,
        false_negatives: fn_,
        false_positives: fp,
        true_negatives: tn,
        precision,
        recall,
        f1,
        false_positive_rate: ratio(fp, fp + tn),
        accuracy: ratio(tp + tn, items.len()),
        by_category,
        rule_hits,
        detected_by,
        false_positives_by,
        speed: Speed::default(),
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "items            {}", self.items)?;
        writeln!(f, "                 predicted attack  predicted benign")?;
        writeln!(
            f,
            "actual attack    {:>16}  {:>16}",
            self.true_positives, self.false_negatives
        )?;
        writeln!(
            f,
            "actual benign    {:>16}  {:>16}",
            self.false_positives, self.true_negatives
        )?;
        writeln!(f, "precision        {:.4}", self.precision)?;
        writeln!(f, "recall           {:.4}", self.recall)?;
        writeln!(f, "f1               {:.4}", self.f1)?;
        writeln!(f, "false-pos. rate  {:.4}", self.false_positive_rate)?;
        writeln!(f, "accuracy         {:.4}", self.accuracy)?;
        writeln!(f, "by category      detected/total")?;
        for (c, n) in &self.by_category {
            writeln!(
                f,
                "  {c:<22} {:>5}/{:<5} {:.3}",
                n.detected,
                n.total,
                ratio(n.detected, n.total)
            )?;
        }
        for (name, c) in [
            ("attacks caught", &self.detected_by),
            ("false positives", &self.false_positives_by),
        ] {
            if c.classifier_only + c.both > 0 {
                writeln!(
                    f,
                    "{name:<16} by rules only {}, by the classifier only {}, by both {}",
                    c.rules_only, c.classifier_only, c.both
                )?;
            }
        }
        let s = &self.speed;
        if s.items_per_second == 0.0 {
            return writeln!(f, "throughput       not timed");
        }
        let warmed = if s.warmed_on > 0 {
            format!("after a warm-up on {} other texts", s.warmed_on)
        } else {
            "cold: no warm-up".to_string()
        };
        writeln!(
            f,
            "throughput       {:.0} items/s, {:.2} MB/s ({warmed}; each text scanned once; one thread, scan time only)",
            s.items_per_second, s.megabytes_per_second
        )?;
        writeln!(
            f,
            "latency          p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us; prompts <= 4 KiB ({}): p99 {:.1} us, max {:.1} us",
            s.p50_us, s.p90_us, s.p99_us, s.max_us, s.small_items, s.small_p99_us, s.small_max_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile, PackSet};
    use crate::policy::Policy;

    fn pack() -> CompiledPack {
        let mut set = PackSet::new();
        set.insert(
            "p".into(),
            serde_yaml::from_str("version: '1'\nrules:\n- {id: bad, category: jailbreak, severity: high, weight: 70, keywords: {any: [evil]}}\n").unwrap(),
        );
        compile(&set, Policy::default_policy()).unwrap()
    }

    #[test]
    fn confusion_matrix_and_rates() {
        let corpus = [
            r#"{"id":"1","text":"evil plan","label":"attack","category":"jailbreak"}"#,
            r#"{"id":"2","text":"nice plan","label":"attack","category":"jailbreak"}"#,
            r#"{"id":"3","text":"so evil","label":0,"category":"benign"}"#,
            r#"{"id":"4","text":"hello","label":false,"category":"benign"}"#,
            "",
            r#"{"id":"5","text":"hi","label":"benign","category":"benign"}"#,
        ]
        .join("\n");
        let records = read_corpus(corpus.as_bytes(), &Fields::default()).unwrap();
        let (r, items) = evaluate(&pack(), &records, &[]).unwrap();
        assert_eq!(items.len(), 5);
        assert_eq!(
            (
                r.true_positives,
                r.false_negatives,
                r.false_positives,
                r.true_negatives
            ),
            (1, 1, 1, 2)
        );
        assert!((r.recall - 0.5).abs() < 1e-9);
        assert!((r.precision - 0.5).abs() < 1e-9);
        assert!((r.false_positive_rate - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.by_category["jailbreak"].detected, 1);
        assert_eq!(r.rule_hits["bad"], (1, 1));
        assert_eq!(items[0].id.as_deref(), Some("1"));
        assert!(r.to_string().contains("recall"));
    }

    #[test]
    fn bad_records_name_the_line() {
        let e = read_corpus(
            "{\"text\": \"x\", \"label\": \"maybe\"}\n".as_bytes(),
            &Fields::default(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("line 1:"), "{e}");
        let e = read_corpus("\n{oops\n".as_bytes(), &Fields::default()).unwrap_err();
        assert!(e.to_string().contains("line 2: invalid JSON"), "{e}");
        assert!(matches!(
            read_corpus("".as_bytes(), &Fields::default()),
            Err(EvalError::Empty)
        ));
        let e = read_texts("{\"txt\": \"x\"}\n".as_bytes(), "text").unwrap_err();
        assert!(
            e.to_string().contains("line 1: no string field `text`"),
            "{e}"
        );
    }

    #[test]
    fn warm_up_must_not_share_texts_with_the_timed_pass() {
        let corpus = "{\"text\":\"evil plan\",\"label\":1}\n{\"text\":\"hello\",\"label\":0}\n";
        let records = read_corpus(corpus.as_bytes(), &Fields::default()).unwrap();
        let e = evaluate(&pack(), &records, &["hello".to_string()]).unwrap_err();
        assert!(matches!(e, EvalError::Overlap { shared: 1 }), "{e}");
        let warm = read_texts("{\"text\":\"other\"}\n\n".as_bytes(), "text").unwrap();
        let (r, items) = evaluate(&pack(), &records, &warm).unwrap();
        assert_eq!((r.speed.warmed_on, r.speed.items), (1, 2));
        assert_eq!(r.speed.bytes, "evil plan".len() + "hello".len());
        assert!(r.speed.p50_us <= r.speed.p90_us && r.speed.p99_us <= r.speed.max_us);
        let max = items.iter().map(|i| i.latency_us).max().unwrap() as f64;
        assert!(r.speed.max_us >= max, "max is the slowest item");
        assert!(r.to_string().contains("after a warm-up on 1 other texts"));
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        // Items 1..=100 µs; the slowest ten are 8 KiB prompts, outside the small scope.
        let lat: Vec<(Duration, usize)> = (1..=100)
            .map(|i| (Duration::from_micros(i), if i > 90 { 8192 } else { 100 }))
            .collect();
        let s = Speed::new(&lat, 0);
        assert_eq!(
            (s.p50_us, s.p90_us, s.p99_us, s.max_us),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!((s.items, s.bytes), (100, 90 * 100 + 10 * 8192));
        assert_eq!(
            (s.small_items, s.small_p99_us, s.small_max_us),
            (90, 90.0, 90.0)
        );
        let one = Speed::new(&[(Duration::from_micros(7), 1)], 0);
        assert_eq!((one.p50_us, one.max_us), (7.0, 7.0));
    }
}
