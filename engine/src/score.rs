//! From matched rules to a score and a verdict.
//!
//! Each matched rule counts its weight once, however often it matched (repetition is not more
//! dangerous, and counting it would let a long benign document drift into a block). Weights add
//! up per category, each category is capped by the policy, the total is capped at 100. The
//! thresholds turn the score into a verdict; rule actions then set a floor (`block` blocks,
//! `warn` warns) — `log` rules are reported but weigh nothing.

use std::collections::BTreeMap;

use crate::pack::{Action, Category};
use crate::policy::PolicySpec;
use crate::verdict::Verdict;

/// What scoring needs to know about one matched rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scored {
    pub category: Category,
    pub weight: u32,
    pub action: Option<Action>,
}

/// Score (0–100) and the verdict enforcement would reach.
pub fn score(matched: impl IntoIterator<Item = Scored>, policy: &PolicySpec) -> (u32, Verdict) {
    let mut per_category: BTreeMap<Category, u32> = BTreeMap::new();
    let mut floor = Verdict::Allow;
    for m in matched {
        match m.action {
            Some(Action::Log) => continue,
            Some(Action::Block) => floor = Verdict::Block,
            Some(Action::Warn) => floor = floor.max(Verdict::Warn),
            Some(Action::Redact) | None => {}
        }
        *per_category.entry(m.category).or_default() += m.weight;
    }
    let total: u32 = per_category
        .iter()
        .map(|(c, w)| (*w).min(policy.category_caps.get(c).copied().unwrap_or(100)))
        .sum();
    let score = total.min(100);
    let by_threshold = if score >= policy.thresholds.block {
        Verdict::Block
    } else if score >= policy.thresholds.warn {
        Verdict::Warn
    } else {
        Verdict::Allow
    };
    (score, by_threshold.max(floor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(category: Category, weight: u32, action: Option<Action>) -> Scored {
        Scored {
            category,
            weight,
            action,
        }
    }

    #[test]
    fn thresholds() {
        let p = PolicySpec::default(); // warn 30, block 60
        assert_eq!(score([], &p), (0, Verdict::Allow));
        assert_eq!(
            score([s(Category::Jailbreak, 29, None)], &p),
            (29, Verdict::Allow)
        );
        assert_eq!(
            score([s(Category::Jailbreak, 30, None)], &p),
            (30, Verdict::Warn)
        );
        let two = [
            s(Category::Jailbreak, 40, None),
            s(Category::PromptInjection, 20, None),
        ];
        assert_eq!(score(two, &p), (60, Verdict::Block));
    }

    #[test]
    fn total_is_capped_at_100() {
        let p = PolicySpec::default();
        let many = [
            s(Category::Jailbreak, 90, None),
            s(Category::PromptInjection, 90, None),
        ];
        assert_eq!(score(many, &p), (100, Verdict::Block));
    }

    #[test]
    fn category_caps_apply_per_category() {
        let mut p = PolicySpec::default();
        p.category_caps.insert(Category::Pii, 25);
        let pii = [s(Category::Pii, 20, None), s(Category::Pii, 20, None)];
        assert_eq!(score(pii, &p), (25, Verdict::Allow));
    }

    #[test]
    fn actions_set_floors_and_log_weighs_nothing() {
        let p = PolicySpec::default();
        assert_eq!(
            score([s(Category::Secrets, 5, Some(Action::Block))], &p),
            (5, Verdict::Block)
        );
        assert_eq!(
            score([s(Category::Other, 1, Some(Action::Warn))], &p),
            (1, Verdict::Warn)
        );
        assert_eq!(
            score([s(Category::Other, 90, Some(Action::Log))], &p),
            (0, Verdict::Allow)
        );
        assert_eq!(
            score([s(Category::Pii, 20, Some(Action::Redact))], &p),
            (20, Verdict::Allow)
        );
    }

    proptest! {
        #[test]
        fn score_is_bounded_and_monotonic(weights in proptest::collection::vec(0u32..=100, 0..20)) {
            let p = PolicySpec::default();
            let items: Vec<_> = weights.iter().map(|w| s(Category::Other, *w, None)).collect();
            let (total, verdict) = score(items.clone(), &p);
            prop_assert!(total <= 100);
            let mut more = items;
            more.push(s(Category::Jailbreak, 10, None));
            let (total2, verdict2) = score(more, &p);
            prop_assert!(total2 >= total);
            prop_assert!(verdict2 >= verdict);
        }
    }
}
