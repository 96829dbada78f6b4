//! Replicas: the HorizontalPodAutoscaler and the PodDisruptionBudget.

use super::*;

pub(super) fn hpa(
    policy: &ScanPolicy,
    names: &Names,
    owner: &Option<OwnerReference>,
) -> HorizontalPodAutoscaler {
    let s = &policy.spec.scanner;
    HorizontalPodAutoscaler {
        metadata: meta(names, &names.scanner, owner),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_string()),
                kind: "Deployment".to_string(),
                name: names.scanner.clone(),
            },
            min_replicas: Some(s.replicas.min),
            max_replicas: s.replicas.max,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_string(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_string(),
                    target: MetricTarget {
                        type_: "Utilization".to_string(),
                        average_utilization: Some(s.target_cpu_utilization_percentage),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    }
}

/// `maxUnavailable: 1` rather than `minAvailable`: with `replicas.min: 1` a `minAvailable: 1`
/// budget would block every node drain.
pub(super) fn pdb(names: &Names, owner: &Option<OwnerReference>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(names, &names.scanner, owner),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(names)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
