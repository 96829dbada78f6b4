//! Measuring a bundle against a labelled corpus (JSON Lines): confusion matrix, precision,
//! recall, F1, false-positive rate, per-category recall and throughput.
//!
//! A prediction is positive when the verdict enforcement reaches is not `allow` — a warning is a
//! detection, since PII and secrets inside ordinary requests are meant to warn or redact.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

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
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            text: "text".into(),
            label: "label".into(),
            category: "category".into(),
            id: "id".into(),
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
    /// First pass (cold automata).
    pub scan_seconds: f64,
    pub items_per_second: f64,
    pub megabytes_per_second: f64,
    /// Second pass over the same items (warm automata).
    pub warm_items_per_second: f64,
    pub warm_megabytes_per_second: f64,
}

/// Scans every record of `input` and scores the bundle.
pub fn evaluate(
    pack: &CompiledPack,
    input: impl BufRead,
    fields: &Fields,
) -> Result<(Report, Vec<ItemResult>), EvalError> {
    let hasher = InputHasher::ephemeral();
    // Throughput should describe a warm scanner, not the one-off compile of span regexes.
    pack.warm_up();
    let mut items = Vec::new();
    let mut texts = Vec::new();
    let mut elapsed = Duration::ZERO;
    let mut bytes = 0usize;
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
        let started = Instant::now();
        let result = pack.scan(text, &hasher);
        let took = started.elapsed();
        elapsed += took;
        bytes += text.len();
        texts.push(text.to_string());
        items.push(ItemResult {
            id: v
                .get(&fields.id)
                .and_then(Value::as_str)
                .map(str::to_string),
            line: line_no,
            attack,
            category: v
                .get(&fields.category)
                .and_then(Value::as_str)
                .map(str::to_string),
            verdict: result.effective_verdict(),
            score: result.score,
            rules: result.rule_ids().map(str::to_string).collect(),
            latency_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        });
    }
    if items.is_empty() {
        return Err(EvalError::Empty);
    }
    // The first pass runs on a cold scanner: its lazy automata build their states as new text
    // arrives. A second pass shows the steady state a long-running scanner reaches.
    let started = Instant::now();
    for t in &texts {
        std::hint::black_box(pack.scan(t, &hasher));
    }
    let warm = started.elapsed();
    let mut report = report(&items, elapsed, bytes);
    let secs = warm.as_secs_f64();
    if secs > 0.0 {
        report.warm_items_per_second = items.len() as f64 / secs;
        report.warm_megabytes_per_second = bytes as f64 / secs / 1e6;
    }
    Ok((report, items))
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

fn report(items: &[ItemResult], elapsed: Duration, bytes: usize) -> Report {
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
    for i in items {
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
    let secs = elapsed.as_secs_f64();
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
        scan_seconds: secs,
        items_per_second: if secs > 0.0 {
            items.len() as f64 / secs
        } else {
            0.0
        },
        warm_items_per_second: 0.0,
        warm_megabytes_per_second: 0.0,
        megabytes_per_second: if secs > 0.0 {
            bytes as f64 / secs / 1e6
        } else {
            0.0
        },
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
        writeln!(
            f,
            "throughput       {:.0} items/s, {:.1} MB/s cold (first pass); {:.0} items/s, {:.1} MB/s warm (second pass); one thread, scan time only",
            self.items_per_second,
            self.megabytes_per_second,
            self.warm_items_per_second,
            self.warm_megabytes_per_second
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
        let (r, items) = evaluate(&pack(), corpus.as_bytes(), &Fields::default()).unwrap();
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
        let e = evaluate(
            &pack(),
            "{\"text\": \"x\", \"label\": \"maybe\"}\n".as_bytes(),
            &Fields::default(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("line 1:"), "{e}");
        let e = evaluate(&pack(), "\n{oops\n".as_bytes(), &Fields::default()).unwrap_err();
        assert!(e.to_string().contains("line 2: invalid JSON"), "{e}");
        assert!(matches!(
            evaluate(&pack(), "".as_bytes(), &Fields::default()),
            Err(EvalError::Empty)
        ));
    }
}
