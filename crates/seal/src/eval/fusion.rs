//! Fusing two rankings of the same query: reciprocal-rank fusion and normalised score
//! interpolation.
//!
//! Not for: choosing the fusion settings (choose them on train/dev queries with `seal eval`,
//! never on a test split).
//!
//! Every function returns the fused list in trec_eval's order (score descending, ties by id
//! descending), so that the result does not depend on the order of equal inputs.

use super::run::{sort_like_trec_eval, Run};
use crate::Score;
use std::collections::HashMap;

/// How two rankings are fused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FusionMethod {
    /// Weighted reciprocal-rank fusion of two lists: `2w / (k + rank_a) + 2(1 − w) / (k + rank_b)`,
    /// rank 1-based; `weight` = 0.5 is plain RRF (Cormack et al. 2009), with the same scores.
    ReciprocalRank {
        /// The damping constant (60 in Cormack et al. 2009).
        k: f64,
        /// The weight `w` of the first list, in [0, 1].
        weight: f64,
    },
    /// `weight · norm(a) + (1 − weight) · norm(b)` of per-query normalised scores.
    Interpolation {
        /// The weight of the first list.
        weight: f64,
        /// How each list's scores are normalised.
        normalization: Normalization,
    },
}

impl Default for FusionMethod {
    fn default() -> Self {
        FusionMethod::ReciprocalRank { k: 60.0, weight: 0.5 }
    }
}

/// Per-query score normalisation for [`interpolate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// `(s − min) / (max − min)`; every score becomes 1 when all are equal.
    MinMax,
    /// `(s − mean) / standard deviation` (population); every score becomes 0 when all are equal.
    ZScore,
}

/// Reciprocal-rank fusion of several rankings of one query. A passage's rank in a list is its
/// 1-based position in that list as given (best first); a passage absent from a list gets
/// nothing from it.
pub fn reciprocal_rank_fusion(lists: &[&[(String, Score)]], k: f64) -> Vec<(String, Score)> {
    let mut fused: HashMap<&str, Score> = HashMap::new();
    for list in lists {
        for (position, (id, _)) in list.iter().enumerate() {
            *fused.entry(id.as_str()).or_default() += 1.0 / (k + (position + 1) as f64);
        }
    }
    finish(fused)
}

/// Weighted reciprocal-rank fusion of two rankings (see [`FusionMethod::ReciprocalRank`]).
pub fn weighted_reciprocal_rank_fusion(
    a: &[(String, Score)],
    b: &[(String, Score)],
    k: f64,
    weight: f64,
) -> Vec<(String, Score)> {
    let mut fused: HashMap<&str, Score> = HashMap::new();
    for (list, list_weight) in [(a, 2.0 * weight), (b, 2.0 * (1.0 - weight))] {
        for (position, (id, _)) in list.iter().enumerate() {
            *fused.entry(id.as_str()).or_default() += list_weight / (k + (position + 1) as f64);
        }
    }
    finish(fused)
}

/// The scores of `list` normalised as `normalization` says, in the same order.
pub fn normalize(list: &[(String, Score)], normalization: Normalization) -> Vec<Score> {
    if list.is_empty() {
        return Vec::new();
    }
    let scores: Vec<Score> = list.iter().map(|(_, s)| *s).collect();
    match normalization {
        Normalization::MinMax => {
            let min = scores.iter().copied().fold(f64::INFINITY, f64::min);
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if max > min {
                scores.iter().map(|s| (s - min) / (max - min)).collect()
            } else {
                vec![1.0; scores.len()]
            }
        }
        Normalization::ZScore => {
            let n = scores.len() as f64;
            let mean = scores.iter().sum::<f64>() / n;
            let variance = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
            let deviation = variance.sqrt();
            if deviation > 0.0 {
                scores.iter().map(|s| (s - mean) / deviation).collect()
            } else {
                vec![0.0; scores.len()]
            }
        }
    }
}

/// `weight · norm(a) + (1 − weight) · norm(b)` over the union of both lists. A passage missing
/// from one list takes that list's lowest normalised score (it ranked below everything the list
/// returned); an empty list contributes 0.
pub fn interpolate(
    a: &[(String, Score)],
    b: &[(String, Score)],
    weight: f64,
    normalization: Normalization,
) -> Vec<(String, Score)> {
    let normalized_a = normalize(a, normalization);
    let normalized_b = normalize(b, normalization);
    let floor = |v: &[Score]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (floor_a, floor_b) = (floor(&normalized_a), floor(&normalized_b));
    let floor_a = if floor_a.is_finite() { floor_a } else { 0.0 };
    let floor_b = if floor_b.is_finite() { floor_b } else { 0.0 };
    let mut parts: HashMap<&str, (Option<Score>, Option<Score>)> = HashMap::new();
    for ((id, _), score) in a.iter().zip(&normalized_a) {
        parts.entry(id.as_str()).or_default().0.get_or_insert(*score);
    }
    for ((id, _), score) in b.iter().zip(&normalized_b) {
        parts.entry(id.as_str()).or_default().1.get_or_insert(*score);
    }
    let fused = parts
        .into_iter()
        .map(|(id, (score_a, score_b))| {
            let score =
                weight * score_a.unwrap_or(floor_a) + (1.0 - weight) * score_b.unwrap_or(floor_b);
            (id, score)
        })
        .collect();
    finish(fused)
}

/// Fuses one query's two rankings with `method`.
pub fn fuse(
    a: &[(String, Score)],
    b: &[(String, Score)],
    method: FusionMethod,
) -> Vec<(String, Score)> {
    match method {
        FusionMethod::ReciprocalRank { k, weight } => {
            weighted_reciprocal_rank_fusion(a, b, k, weight)
        }
        FusionMethod::Interpolation { weight, normalization } => {
            interpolate(a, b, weight, normalization)
        }
    }
}

/// Fuses two runs query by query (a query in only one run keeps that run's ranking, fused with
/// an empty list), keeping the first `depth` results.
pub fn fuse_runs(a: &Run, b: &Run, method: FusionMethod, depth: usize) -> Run {
    let empty = Vec::new();
    let queries: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    queries
        .into_iter()
        .map(|query| {
            let mut fused =
                fuse(a.get(query).unwrap_or(&empty), b.get(query).unwrap_or(&empty), method);
            fused.truncate(depth);
            (query.clone(), fused)
        })
        .collect()
}

/// A retriever that fuses two others: each is asked for `depth` passages, the lists are fused
/// with `method`, and the first `k` are returned.
pub struct Hybrid<A, B> {
    /// The first system (the `weight` side of an interpolation).
    pub first: A,
    /// The second system.
    pub second: B,
    /// How the two rankings are fused.
    pub method: FusionMethod,
    /// How many passages to ask each system for (at least the `k` of a request).
    pub depth: usize,
    /// The name in tables and run files.
    pub name: String,
}

impl<A: super::Retriever, B: super::Retriever> super::Retriever for Hybrid<A, B> {
    fn name(&self) -> &str {
        &self.name
    }

    fn retrieve(&self, query: &str, k: usize) -> crate::Result<Vec<(String, Score)>> {
        let depth = self.depth.max(k);
        let first = self.first.retrieve(query, depth)?;
        let second = self.second.retrieve(query, depth)?;
        let mut fused = fuse(&first, &second, self.method);
        fused.truncate(k);
        Ok(fused)
    }
}

fn finish(fused: HashMap<&str, Score>) -> Vec<(String, Score)> {
    let mut list: Vec<(String, Score)> =
        fused.into_iter().map(|(id, score)| (id.to_string(), score)).collect();
    sort_like_trec_eval(&mut list);
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[(&str, f64)]) -> Vec<(String, Score)> {
        items.iter().map(|(d, s)| (d.to_string(), *s)).collect()
    }

    fn close(a: &[(String, Score)], b: &[(&str, f64)]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for ((id, score), (want_id, want)) in a.iter().zip(b) {
            assert_eq!(id, want_id, "{a:?}");
            assert!((score - want).abs() < 1e-12, "{id}: {score} vs {want}");
        }
    }

    /// By hand with k = 60: a = [x, y, z], b = [y, w].
    /// x: 1/61; y: 1/62 + 1/61; z: 1/63; w: 1/62.
    #[test]
    fn rrf_by_hand() {
        let a = list(&[("x", 9.0), ("y", 5.0), ("z", 1.0)]);
        let b = list(&[("y", 0.3), ("w", 0.2)]);
        let fused = reciprocal_rank_fusion(&[&a, &b], 60.0);
        close(
            &fused,
            &[
                ("y", 1.0 / 62.0 + 1.0 / 61.0),
                ("x", 1.0 / 61.0),
                ("w", 1.0 / 62.0),
                ("z", 1.0 / 63.0),
            ],
        );
    }

    /// Weighted by hand, k = 10, w = 0.25: a = [x, y], b = [y, z].
    /// x: 0.5/11; y: 0.5/12 + 1.5/11; z: 1.5/12. At w = 0.5 it equals plain RRF.
    #[test]
    fn weighted_rrf_by_hand() {
        let a = list(&[("x", 9.0), ("y", 5.0)]);
        let b = list(&[("y", 0.3), ("z", 0.2)]);
        let fused = weighted_reciprocal_rank_fusion(&a, &b, 10.0, 0.25);
        close(&fused, &[("y", 0.5 / 12.0 + 1.5 / 11.0), ("z", 1.5 / 12.0), ("x", 0.5 / 11.0)]);
        let plain = reciprocal_rank_fusion(&[&a, &b], 60.0);
        let weighted = weighted_reciprocal_rank_fusion(&a, &b, 60.0, 0.5);
        assert_eq!(plain.len(), weighted.len());
        for ((id, s), (id2, s2)) in plain.iter().zip(&weighted) {
            assert_eq!(id, id2);
            assert!((s - s2).abs() < 1e-15);
        }
    }

    /// Min-max by hand: a = x 10, y 6, z 2 → 1, 0.5, 0; b = y 3, w 1 → 1, 0.
    /// weight 0.25: x = .25·1 + .75·0 (missing → b's floor 0) = .25; y = .25·.5 + .75·1 = .875;
    /// z = 0 + 0 = 0; w = .25·0 (missing → a's floor 0) + 0 = 0. Tie z/w: id descending → z, w.
    #[test]
    fn min_max_interpolation_by_hand() {
        let a = list(&[("x", 10.0), ("y", 6.0), ("z", 2.0)]);
        let b = list(&[("y", 3.0), ("w", 1.0)]);
        let fused = interpolate(&a, &b, 0.25, Normalization::MinMax);
        close(&fused, &[("y", 0.875), ("x", 0.25), ("z", 0.0), ("w", 0.0)]);
    }

    /// z-score by hand: a = 3, 1 → mean 2, sd 1 → 1, −1; b = 4, 4 → all equal → 0, 0.
    /// weight 0.5: p = .5·1 + .5·0 = .5; q = .5·(−1) + .5·0 = −.5 (in both lists);
    /// r only in b: .5·(−1, a's floor) + .5·0 = −.5.
    #[test]
    fn z_score_interpolation_by_hand() {
        let a = list(&[("p", 3.0), ("q", 1.0)]);
        let b = list(&[("q", 4.0), ("r", 4.0)]);
        let fused = interpolate(&a, &b, 0.5, Normalization::ZScore);
        close(&fused, &[("p", 0.5), ("r", -0.5), ("q", -0.5)]);
    }

    #[test]
    fn normalisation_edge_cases() {
        assert_eq!(normalize(&list(&[("a", 2.0), ("b", 2.0)]), Normalization::MinMax), [1.0, 1.0]);
        assert!(normalize(&[], Normalization::ZScore).is_empty());
        let fused = interpolate(&[], &list(&[("a", 1.0)]), 0.7, Normalization::MinMax);
        close(&fused, &[("a", 0.3)]);
    }

    #[test]
    fn fuse_runs_covers_queries_of_either_run_and_truncates() {
        let mut a = Run::new();
        a.insert("q1".into(), list(&[("x", 1.0), ("y", 0.5)]));
        let mut b = Run::new();
        b.insert("q2".into(), list(&[("z", 1.0)]));
        let fused = fuse_runs(&a, &b, FusionMethod::default(), 1);
        assert_eq!(fused.len(), 2);
        close(&fused["q1"], &[("x", 1.0 / 61.0)]);
        close(&fused["q2"], &[("z", 1.0 / 61.0)]);
    }

    struct Fixed(&'static str, Vec<(String, Score)>);

    impl crate::eval::Retriever for Fixed {
        fn name(&self) -> &str {
            self.0
        }

        fn retrieve(&self, _query: &str, k: usize) -> crate::Result<Vec<(String, Score)>> {
            Ok(self.1.iter().take(k).cloned().collect())
        }
    }

    #[test]
    fn hybrid_retriever_fuses_both_and_truncates_to_k() {
        use crate::eval::Retriever;
        let hybrid = Hybrid {
            first: Fixed("a", list(&[("x", 9.0), ("y", 5.0), ("z", 1.0)])),
            second: Fixed("b", list(&[("y", 0.3), ("w", 0.2)])),
            method: FusionMethod::ReciprocalRank { k: 60.0, weight: 0.5 },
            depth: 10,
            name: "hybrid".into(),
        };
        assert_eq!(hybrid.name(), "hybrid");
        let fused = hybrid.retrieve("q", 2).unwrap();
        close(&fused, &[("y", 1.0 / 62.0 + 1.0 / 61.0), ("x", 1.0 / 61.0)]);
    }
}
