//! Cross-source evaluation of a bundle with a learned stage: the model is retrained without
//! the group of records being scanned, so the figures describe text the model never saw.
//!
//! Records are split into folds by a group field (`source`: the package file or template a
//! record came from), whole groups at a time ([`group_folds`]). For each fold the bundle's
//! model is retrained on extra training data plus every other fold, with the settings recorded
//! in its training manifest, swapped into the pack that defines it, and the fold is scanned by
//! the full bundle (rules + retrained model). The rules themselves are not retrained: figures
//! for rules tuned on the same corpus stay in-sample for the rules.

use thiserror::Error;

use crate::classifier::train::{group_folds, train, Example, LabelDef, TrainOptions};
use crate::compile::{compile, CompileError, PackSet};
use crate::eval::{evaluate, report_of, EvalError, ItemResult, Record, Report};
use crate::policy::Policy;

#[derive(Debug, Error)]
pub enum CrossError {
    #[error("no loaded pack defines a model named `{0}`")]
    NoModel(String),
    #[error("model `{0}` has no training manifest with its labels' categories; retrain it with `pd-scanner train`")]
    NoManifest(String),
    #[error("fold {fold}: training: {source}")]
    Train {
        fold: usize,
        source: crate::classifier::train::TrainError,
    },
    #[error("fold {fold}: {source}")]
    Compile { fold: usize, source: CompileError },
    #[error(transparent)]
    Eval(#[from] EvalError),
}

/// A record as a training example (`group` falls back to its line, so records without one are
/// each their own group).
pub fn example(r: &Record) -> Example {
    Example {
        text: r.text.clone(),
        attack: r.attack,
        category: r.category.clone().unwrap_or_default(),
        group: r
            .group
            .clone()
            .unwrap_or_else(|| format!("line {}", r.line)),
    }
}

/// Scans every record with a bundle whose model `model` was trained without the record's fold.
/// `extra` is training data that is never scanned. Returns the report over all folds and the
/// items in record order.
pub fn cross_source(
    packs: &PackSet,
    policy: &Policy,
    model: &str,
    records: &[Record],
    extra: &[Example],
    folds: usize,
    options: &TrainOptions,
) -> Result<(Report, Vec<ItemResult>), CrossError> {
    let (pack_name, spec) = packs
        .iter()
        .find_map(|(n, p)| p.models.iter().find(|m| m.name == model).map(|m| (n, m)))
        .ok_or_else(|| CrossError::NoModel(model.to_string()))?;
    let manifest = spec
        .training
        .as_ref()
        .ok_or_else(|| CrossError::NoManifest(model.to_string()))?;
    let labels: Vec<LabelDef> = manifest
        .label_categories
        .iter()
        .map(|l| LabelDef {
            name: l.label.clone(),
            categories: l.categories.clone(),
        })
        .collect();
    let options = TrainOptions {
        bits: spec.bits,
        seed: manifest.seed,
        negative_categories: manifest.negative_categories.clone(),
        // Thresholds stay those of the pack's rules; no inner cross-validation needed.
        folds: 0,
        ..options.clone()
    };
    let examples: Vec<Example> = records.iter().map(example).collect();
    let groups: Vec<&str> = examples.iter().map(|e| e.group.as_str()).collect();
    let fold_of = group_folds(&groups, folds.max(2));
    let mut items: Vec<(usize, ItemResult)> = Vec::with_capacity(records.len());
    for fold in 0..folds.max(2) {
        let held: Vec<usize> = (0..records.len()).filter(|&i| fold_of[i] == fold).collect();
        if held.is_empty() {
            continue;
        }
        let training: Vec<Example> = extra
            .iter()
            .cloned()
            .chain(
                (0..records.len())
                    .filter(|&i| fold_of[i] != fold)
                    .map(|i| examples[i].clone()),
            )
            .collect();
        let trained = train(
            &spec.name,
            &spec.version,
            &manifest.date,
            &training,
            &labels,
            &options,
        )
        .map_err(|source| CrossError::Train { fold, source })?;
        let mut swapped = packs.clone();
        if let Some(p) = swapped.get_mut(pack_name) {
            for m in p.models.iter_mut().filter(|m| m.name == model) {
                *m = trained.model.to_spec(m.training.clone());
            }
        }
        let pack = compile(&swapped, policy.clone())
            .map_err(|source| CrossError::Compile { fold, source })?;
        pack.warm_up();
        let fold_records: Vec<Record> = held.iter().map(|&i| records[i].clone()).collect();
        let (_, fold_items) = evaluate(&pack, &fold_records, &[])?;
        items.extend(held.into_iter().zip(fold_items));
    }
    items.sort_by_key(|(i, _)| *i);
    let items: Vec<ItemResult> = items.into_iter().map(|(_, it)| it).collect();
    Ok((report_of(&items), items))
}
