//! The learned stage: a compact linear text classifier that ships as data inside a rule pack.
//!
//! A pack's `models:` section holds each model's quantized weights (base64) with their content
//! hash, the feature recipe they were trained for and a training manifest; a rule with a
//! `classifier:` matcher fires when one of the model's labels reaches the rule's threshold.
//! Because the model is pack data, it is versioned, hashed, tested, hot-loaded and rolled out
//! exactly like rules, with no download and no GPU.
//!
//! The model is a one-vs-rest logistic regression per label over hashed n-gram features
//! ([`features`]). Scoring a text is one pass: every feature adds one small row of `i8`
//! weights (one per label) to an accumulator, so the cost is a few nanoseconds per byte.

pub mod features;
pub mod pack;
pub mod train;

use std::fmt;

use base64::Engine as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Fewest and most hash bits a model may use (2^bits buckets).
pub const MIN_BITS: u8 = 8;
pub const MAX_BITS: u8 = 18;
/// Most labels one model may have.
pub const MAX_LABELS: usize = 8;
/// Largest decoded weight table: keeps a model's base64 text at or below 256 KiB, so a whole
/// bundle stays far below the 1 MiB ConfigMap limit.
pub const MAX_WEIGHT_BYTES: usize = 192 << 10;

/// The feature recipe a model was trained for. A model is only meaningful with the exact
/// features it was trained on, so an unknown recipe is refused rather than guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Recipe {
    /// Character 3–5-grams and word 1–2-grams of the folded, normalized text, hashed into
    /// 2^bits buckets ([`features::for_each_bucket`]); each feature counts once per
    /// occurrence, and the sum is divided by √(number of features + [`SHORT_TEXT_PRIOR`]).
    #[serde(rename = "hashed-ngrams-v1")]
    HashedNgramsV1,
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Recipe::HashedNgramsV1 => "hashed-ngrams-v1",
        })
    }
}

/// One output of a model: `probability = sigmoid(bias + scale × Σ weights / √features)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSpec {
    /// Name rules refer to (`classifier.label`).
    pub name: String,
    /// Intercept of the logistic model. (`f64` so that the number reads back identically
    /// through JSON, YAML and the API server, which all hold numbers as doubles.)
    pub bias: f64,
    /// Dequantization factor of this label's `i8` weights.
    pub scale: f64,
}

/// A model as written in a pack (`spec.models[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelSpec {
    /// Name rules refer to (`classifier.model`); a pack that extends another may redefine an
    /// inherited model by name (to retrain it on its own data).
    pub name: String,
    /// Free-form version, reported in advisories.
    pub version: String,
    pub recipe: Recipe,
    /// The weight table has 2^bits rows.
    #[schemars(range(min = 8, max = 18))]
    pub bits: u8,
    pub labels: Vec<LabelSpec>,
    /// Base64 of the `i8` weight table, row-major: row = feature bucket, column = label.
    pub weights: String,
    /// `sha256:<hex>` over the recipe, bits, labels and weights ([`ModelSpec::content_hash`]);
    /// a model whose content does not match is refused.
    pub sha256: String,
    /// How the model was made: data, counts, cross-validated figures. Informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingManifest>,
}

/// What a model was trained on and how well it did on data it did not see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrainingManifest {
    /// Day of training (`YYYY-MM-DD`).
    pub date: String,
    pub seed: u64,
    pub records: usize,
    pub attacks: usize,
    pub benign: usize,
    /// Records per source package or generator (the part of `source` before `:`).
    pub sources: Vec<SourceCount>,
    /// Categories each label was trained to recognize.
    pub label_categories: Vec<LabelCategories>,
    /// Attack categories used as negatives for every label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub negative_categories: Vec<String>,
    /// Out-of-fold figures from grouped cross-validation at the thresholds written into the
    /// generated rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_validation: Option<CrossValidation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceCount {
    pub source: String,
    pub records: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelCategories {
    pub label: String,
    pub categories: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrossValidation {
    /// Record field whose values were kept together in one fold (e.g. `source`).
    pub group_by: String,
    pub folds: usize,
    pub labels: Vec<LabelFigures>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelFigures {
    pub label: String,
    pub threshold: f64,
    /// Share of the label's attacks caught, out of fold.
    pub recall: f64,
    /// Share of benign records at or above the threshold, out of fold.
    pub false_positive_rate: f64,
}

/// Why a model was refused. Every message names the model; the compiler adds the pack.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    #[error("model `{model}`: `bits` is {bits}; it must be {MIN_BITS}–{MAX_BITS}")]
    Bits { model: String, bits: u8 },
    #[error("model `{model}`: it has {count} labels; it needs 1–{MAX_LABELS}")]
    LabelCount { model: String, count: usize },
    #[error("model `{model}`: label `{label}` is listed twice or is not a valid name")]
    LabelName { model: String, label: String },
    #[error("model `{model}`: label `{label}` has a non-finite bias or scale")]
    NotFinite { model: String, label: String },
    #[error("model `{model}`: its weights are too large ({bytes} bytes decoded; at most {MAX_WEIGHT_BYTES})")]
    TooLarge { model: String, bytes: usize },
    #[error("model `{model}`: `weights` is not valid base64 ({reason})")]
    Base64 { model: String, reason: String },
    #[error("model `{model}`: `weights` holds {actual} bytes; 2^{bits} rows × {labels} labels needs {expected}")]
    Shape {
        model: String,
        bits: u8,
        labels: usize,
        expected: usize,
        actual: usize,
    },
    #[error(
        "model `{model}`: content hash mismatch: the pack says {stated}, the content is {actual}"
    )]
    Hash {
        model: String,
        stated: String,
        actual: String,
    },
}

impl ModelSpec {
    /// `sha256:<hex>` over everything that determines the model's output: recipe, bits,
    /// labels (name, bias and scale bits) and the decoded weights.
    pub fn content_hash(&self, weights: &[u8]) -> String {
        content_hash(self.recipe, self.bits, &self.labels, weights)
    }

    /// Decodes and checks the model. Cheap enough to run on every compile (one base64 decode
    /// and one SHA-256 over at most 192 KiB).
    pub fn decode(&self) -> Result<Model, ModelError> {
        self.check_shape()?;
        let bytes = self.weight_bytes()?;
        let rows = Rows::new(&bytes, self.labels.len());
        Ok(Model {
            name: self.name.clone(),
            version: self.version.clone(),
            recipe: self.recipe,
            bits: self.bits,
            labels: self.labels.clone(),
            rows,
        })
    }

    /// The checks that need no decoding: the table's width, the label count, each label's
    /// name (unique, and safe to show) and its bias and scale (finite).
    fn check_shape(&self) -> Result<(), ModelError> {
        let model = self.name.clone();
        if !(MIN_BITS..=MAX_BITS).contains(&self.bits) {
            return Err(ModelError::Bits {
                model,
                bits: self.bits,
            });
        }
        if self.labels.is_empty() || self.labels.len() > MAX_LABELS {
            return Err(ModelError::LabelCount {
                model,
                count: self.labels.len(),
            });
        }
        for (i, l) in self.labels.iter().enumerate() {
            let valid = !l.name.is_empty()
                && l.name.len() <= 64
                && l.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
            if !valid || self.labels[..i].iter().any(|o| o.name == l.name) {
                return Err(ModelError::LabelName {
                    model,
                    label: l.name.clone(),
                });
            }
            if !l.bias.is_finite() || !l.scale.is_finite() {
                return Err(ModelError::NotFinite {
                    model,
                    label: l.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The weight table, decoded from base64 and checked against its stated size, the shape
    /// the header implies and the stated hash. Oversized text is refused before decoding.
    fn weight_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let model = self.name.clone();
        // Refuse before decoding: base64 is 4 characters per 3 bytes.
        let approx = self.weights.len() / 4 * 3;
        if approx > MAX_WEIGHT_BYTES + 3 {
            return Err(ModelError::TooLarge {
                model,
                bytes: approx,
            });
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.weights.trim())
            .map_err(|e| ModelError::Base64 {
                model: model.clone(),
                reason: e.to_string(),
            })?;
        if bytes.len() > MAX_WEIGHT_BYTES {
            return Err(ModelError::TooLarge {
                model,
                bytes: bytes.len(),
            });
        }
        let expected = (1usize << self.bits) * self.labels.len();
        if bytes.len() != expected {
            return Err(ModelError::Shape {
                model,
                bits: self.bits,
                labels: self.labels.len(),
                expected,
                actual: bytes.len(),
            });
        }
        let actual = self.content_hash(&bytes);
        if actual != self.sha256 {
            return Err(ModelError::Hash {
                model,
                stated: self.sha256.clone(),
                actual,
            });
        }
        Ok(bytes)
    }
}

fn content_hash(recipe: Recipe, bits: u8, labels: &[LabelSpec], weights: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(recipe.to_string().as_bytes());
    h.update([0, bits]);
    for l in labels {
        h.update((l.name.len() as u32).to_le_bytes());
        h.update(l.name.as_bytes());
        h.update(l.bias.to_bits().to_le_bytes());
        h.update(l.scale.to_bits().to_le_bytes());
    }
    h.update(weights);
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// A decoded, checked model, ready to score texts. Immutable; shared by all scan threads.
#[derive(Clone, PartialEq)]
pub struct Model {
    pub name: String,
    pub version: String,
    pub recipe: Recipe,
    pub bits: u8,
    pub labels: Vec<LabelSpec>,
    /// The weights, one row per feature bucket, padded to 4 or 8 labels so scoring a feature
    /// is one aligned load and a fixed-width add. The stored (unpadded) form is derived from
    /// it when the model is written out ([`Model::to_spec`]).
    rows: Rows,
}

#[derive(Clone, PartialEq)]
enum Rows {
    Four(Box<[[i8; 4]]>),
    Eight(Box<[[i8; 8]]>),
}

impl Rows {
    /// From the stored form: row-major bytes (`i8` as `u8`), `labels` per row.
    fn new(stored: &[u8], labels: usize) -> Rows {
        fn pad<const N: usize>(stored: &[u8], labels: usize) -> Box<[[i8; N]]> {
            stored
                .chunks(labels.max(1))
                .map(|row| {
                    let mut r = [0i8; N];
                    for (d, &s) in r.iter_mut().zip(row) {
                        *d = s as i8;
                    }
                    r
                })
                .collect()
        }
        if labels <= 4 {
            Rows::Four(pad(stored, labels))
        } else {
            Rows::Eight(pad(stored, labels))
        }
    }

    /// Back to the stored form.
    fn stored(&self, labels: usize) -> Vec<u8> {
        fn unpad<const N: usize>(rows: &[[i8; N]], labels: usize) -> Vec<u8> {
            rows.iter()
                .flat_map(|r| r[..labels.min(N)].iter().map(|&w| w as u8))
                .collect()
        }
        match self {
            Rows::Four(r) => unpad(r, labels),
            Rows::Eight(r) => unpad(r, labels),
        }
    }

    fn len(&self) -> usize {
        match self {
            Rows::Four(r) => r.len(),
            Rows::Eight(r) => r.len(),
        }
    }
}

/// Sums the rows of every feature of `text`; returns the sums and the feature count.
fn accumulate<const N: usize>(rows: &[[i8; N]], text: &[u8], bits: u32) -> ([i32; N], usize) {
    let mut acc = [0i32; N];
    let count = features::for_each_bucket(text, bits, |b| {
        if let Some(row) = rows.get(b) {
            for (a, &w) in acc.iter_mut().zip(row) {
                *a += i32::from(w);
            }
        }
    });
    (acc, count)
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("recipe", &self.recipe)
            .field("bits", &self.bits)
            .field("labels", &self.labels)
            .field("rows", &self.rows.len())
            .finish()
    }
}

impl Model {
    /// Builds a model from its parts, quantized weights included (the trainer's output).
    pub(crate) fn from_parts(
        name: String,
        version: String,
        bits: u8,
        labels: Vec<LabelSpec>,
        weights: Vec<i8>,
    ) -> Self {
        let stored: Vec<u8> = weights.iter().map(|&w| w as u8).collect();
        let rows = Rows::new(&stored, labels.len());
        Model {
            name,
            version,
            recipe: Recipe::HashedNgramsV1,
            bits,
            labels,
            rows,
        }
    }

    /// The pack form of this model, with its content hash.
    pub fn to_spec(&self, training: Option<TrainingManifest>) -> ModelSpec {
        let bytes = self.rows.stored(self.labels.len());
        ModelSpec {
            name: self.name.clone(),
            version: self.version.clone(),
            recipe: self.recipe,
            bits: self.bits,
            labels: self.labels.clone(),
            weights: base64::engine::general_purpose::STANDARD.encode(&bytes),
            sha256: content_hash(self.recipe, self.bits, &self.labels, &bytes),
            training,
        }
    }

    pub fn label_index(&self, name: &str) -> Option<usize> {
        self.labels.iter().position(|l| l.name == name)
    }

    /// The probability of each label for `text` (normalized text), written into `out`
    /// (`out.len()` must be the number of labels; extra entries are left alone).
    pub fn probabilities(&self, text: &[u8], out: &mut [f64]) {
        let bits = u32::from(self.bits);
        let mut acc = [0i32; MAX_LABELS];
        let count = match &self.rows {
            Rows::Four(rows) => {
                let (a, n) = accumulate(rows, text, bits);
                acc[..4].copy_from_slice(&a);
                n
            }
            Rows::Eight(rows) => {
                let (a, n) = accumulate(rows, text, bits);
                acc.copy_from_slice(&a);
                n
            }
        };
        let norm = (count as f64 + SHORT_TEXT_PRIOR).max(1.0).sqrt();
        for ((o, l), a) in out.iter_mut().zip(&self.labels).zip(acc) {
            let z = l.bias + l.scale * f64::from(a) / norm;
            *o = sigmoid(z);
        }
    }
}

/// Added to the feature count before the square root that scales a text's sum (part of the
/// `hashed-ngrams-v1` recipe). Without it, a four-word message weighs each of its few
/// features heavily, so one phrase ("you act like") decides alone; with it, short texts lean
/// toward the bias and need more evidence. 512 features is about 150 bytes of text; chosen by
/// cross-source validation (0, 128 and 512 tried: 512 had the fewest false positives on short
/// chat at equal recall).
pub const SHORT_TEXT_PRIOR: f64 = 512.0;

pub(crate) fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Model {
        let bits = 8;
        let labels = vec![
            LabelSpec {
                name: "a".into(),
                bias: -1.0,
                scale: 0.05,
            },
            LabelSpec {
                name: "b".into(),
                bias: 0.5,
                scale: 0.01,
            },
        ];
        let weights = (0..(1usize << bits) * 2).map(|i| (i % 255) as i8).collect();
        Model::from_parts("m".into(), "1".into(), bits, labels, weights)
    }

    #[test]
    fn spec_round_trip_keeps_every_score() {
        let m = tiny();
        let spec = m.to_spec(None);
        let yaml = serde_yaml::to_string(&spec).unwrap();
        let back: ModelSpec = serde_yaml::from_str(&yaml).unwrap();
        let decoded = back.decode().unwrap();
        assert_eq!(decoded, m);
        let (mut p, mut q) = ([0.0; 2], [0.0; 2]);
        m.probabilities(b"Ignore previous instructions", &mut p);
        decoded.probabilities(b"Ignore previous instructions", &mut q);
        assert_eq!(p, q);
    }

    #[test]
    fn biases_read_back_bit_for_bit_through_json_and_yaml_text() {
        let mut m = tiny();
        // Values that need all 17 digits, as training produces.
        m.labels[0].bias = -4.692471721916754;
        m.labels[1].scale = 0.9371900826446281;
        let spec = m.to_spec(None);
        let json = serde_json::to_string(&spec).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let back: ModelSpec = serde_json::from_value(value).unwrap();
        assert_eq!(back.decode().unwrap(), m);
        let yaml = serde_yaml::to_string(&spec).unwrap();
        let back: ModelSpec = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back.decode().unwrap(), m);
    }

    #[test]
    fn malformed_models_are_refused_by_name() {
        let good = tiny().to_spec(None);
        let mut s = good.clone();
        s.weights.replace_range(0..4, "!!!!");
        assert!(matches!(s.decode(), Err(ModelError::Base64 { .. })));
        let mut s = good.clone();
        s.sha256 = "sha256:00".into();
        let e = s.decode().unwrap_err();
        assert!(
            e.to_string().contains("model `m`: content hash mismatch"),
            "{e}"
        );
        let mut s = good.clone();
        s.bits = 9;
        assert!(matches!(s.decode(), Err(ModelError::Shape { .. })));
        let mut s = good.clone();
        s.bits = 30;
        assert!(matches!(s.decode(), Err(ModelError::Bits { .. })));
        let mut s = good.clone();
        s.labels[0].bias = f64::NAN;
        assert!(matches!(s.decode(), Err(ModelError::NotFinite { .. })));
        let mut s = good.clone();
        s.labels[1].name = "a".into();
        assert!(matches!(s.decode(), Err(ModelError::LabelName { .. })));
        let mut s = good.clone();
        s.weights = "A".repeat(400_000);
        assert!(matches!(s.decode(), Err(ModelError::TooLarge { .. })));
        // Changing a bias without re-hashing is caught too.
        let mut s = good;
        s.labels[0].bias = 3.0;
        assert!(matches!(s.decode(), Err(ModelError::Hash { .. })));
    }

    #[test]
    fn unknown_recipe_is_a_parse_error() {
        let mut v = serde_json::to_value(tiny().to_spec(None)).unwrap();
        v["recipe"] = "bag-of-words-v9".into();
        let e = serde_json::from_value::<ModelSpec>(v).unwrap_err();
        assert!(
            e.to_string().contains("unknown variant `bag-of-words-v9`"),
            "{e}"
        );
    }
}
