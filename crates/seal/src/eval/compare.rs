//! Several systems against a baseline on the same queries, metric by metric: means, the
//! difference to the baseline with its interval, a paired test's p-value (optionally
//! Holm-corrected across the systems), wins/ties/losses; as a table to paste into a paper, as
//! JSON, and as per-query differences for plots (`seal eval compare`).
//!
//! Useful for: the question every evaluation asks, "is B better than A here, by how much". Not
//! for: measuring runs (that is [`super::harness::evaluate_run`]; this takes per-query values),
//! or comparing systems on different queries (refused).

use super::metrics::Metrics;
use super::significance::{compare_paired, holm_adjust, PairedOutcome, TestSettings};
use crate::{Error, ErrorKind, Result};
use std::collections::BTreeMap;

/// One system's per-query metrics.
#[derive(Debug, Clone)]
pub struct SystemScores {
    /// The name in tables.
    pub name: String,
    /// Metrics by query id.
    pub per_query: BTreeMap<String, Metrics>,
}

/// How to compare.
#[derive(Debug, Clone)]
pub struct CompareSettings {
    /// The metrics, in display order.
    pub metrics: Vec<String>,
    /// The test, its trials and seed, the interval's coverage.
    pub test: TestSettings,
    /// Correct each metric's p-values for the number of systems compared with the baseline.
    pub holm: bool,
    /// The level below which a (corrected) p-value is marked significant.
    pub alpha: f64,
}

/// One system against the baseline on one metric.
#[derive(Debug, Clone)]
pub struct ComparisonRow {
    /// The metric.
    pub metric: String,
    /// The system (index into [`Comparison::systems`], never 0: the baseline).
    pub system: usize,
    /// The paired outcome.
    pub outcome: PairedOutcome,
    /// The Holm-corrected p-value, when asked for.
    pub p_holm: Option<f64>,
    /// (baseline, system) per query, in [`Comparison::queries`] order.
    pub values: Vec<(f64, f64)>,
}

impl ComparisonRow {
    /// The p-value that decides significance: Holm's when asked for, else the test's.
    pub fn deciding_p(&self) -> f64 {
        self.p_holm.unwrap_or(self.outcome.p_value)
    }
}

/// The comparison of several systems with the first.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The system names; the first is the baseline.
    pub systems: Vec<String>,
    /// The compared queries, sorted.
    pub queries: Vec<String>,
    /// The settings used.
    pub settings: CompareSettings,
    /// Each metric's mean for each system: `means[metric][system]`.
    pub means: BTreeMap<String, Vec<f64>>,
    /// Metric-major, then system order.
    pub rows: Vec<ComparisonRow>,
}

/// Compares every system with the first on `settings.metrics`.
///
/// # Errors
///
/// Fewer than two systems, systems measured on different queries (names the first query that
/// one lacks), a metric a system was not measured with (lists those it was), or invalid test
/// settings.
pub fn compare_systems(systems: &[SystemScores], settings: &CompareSettings) -> Result<Comparison> {
    let invalid = |message: String| Error::new(ErrorKind::InvalidInput, message);
    if systems.len() < 2 {
        return Err(invalid(
            "give at least two runs to compare: a baseline, then the others".into(),
        ));
    }
    if settings.metrics.is_empty() {
        return Err(invalid("give at least one metric to compare (--metrics nDCG@10)".into()));
    }
    let baseline = &systems[0];
    let queries: Vec<String> = baseline.per_query.keys().cloned().collect();
    if queries.is_empty() {
        return Err(invalid(format!("{} has no query to compare", baseline.name)));
    }
    for system in &systems[1..] {
        let missing = queries.iter().find(|q| !system.per_query.contains_key(*q));
        let extra = system.per_query.keys().find(|q| !baseline.per_query.contains_key(*q));
        if let Some(query) = missing.or(extra) {
            let (has, lacks) = if missing.is_some() {
                (&baseline.name, &system.name)
            } else {
                (&system.name, &baseline.name)
            };
            return Err(invalid(format!(
                "{has} and {lacks} were measured on different queries ({lacks} lacks `{query}`): \
                 a paired comparison needs the same ones; measure them on one dataset and split \
                 (seal eval compare --dataset DIR --split SPLIT)"
            )));
        }
    }
    let value = |system: &SystemScores, query: &str, metric: &str| -> Result<f64> {
        system.per_query[query].get(metric).copied().ok_or_else(|| {
            let known: Vec<&str> = system.per_query[query].keys().map(String::as_str).collect();
            invalid(format!(
                "{} has no {metric} for query `{query}`; its metrics are {}",
                system.name,
                known.join(", ")
            ))
        })
    };
    let mut rows = Vec::new();
    let mut means = BTreeMap::new();
    for metric in &settings.metrics {
        let columns: Vec<Vec<f64>> = systems
            .iter()
            .map(|s| queries.iter().map(|q| value(s, q, metric)).collect::<Result<Vec<f64>>>())
            .collect::<Result<_>>()?;
        let metric_means: Vec<f64> =
            columns.iter().map(|c| c.iter().sum::<f64>() / c.len() as f64).collect();
        means.insert(metric.clone(), metric_means);
        let first_row = rows.len();
        for (index, column) in columns.iter().enumerate().skip(1) {
            let outcome = compare_paired(&columns[0], column, &settings.test)?;
            let values = columns[0].iter().copied().zip(column.iter().copied()).collect();
            rows.push(ComparisonRow {
                metric: metric.clone(),
                system: index,
                outcome,
                p_holm: None,
                values,
            });
        }
        if settings.holm {
            let p: Vec<f64> = rows[first_row..].iter().map(|r| r.outcome.p_value).collect();
            for (row, adjusted) in rows[first_row..].iter_mut().zip(holm_adjust(&p)) {
                row.p_holm = Some(adjusted);
            }
        }
    }
    Ok(Comparison {
        systems: systems.iter().map(|s| s.name.clone()).collect(),
        queries,
        settings: settings.clone(),
        means,
        rows,
    })
}

/// `+0.0185` / `−0.0660` (a true minus sign, as in print).
fn signed(value: f64) -> String {
    let text = format!("{value:+.4}");
    text.replacen('-', "−", 1)
}

impl Comparison {
    fn row(&self, metric: &str, system: usize) -> Option<&ComparisonRow> {
        self.rows.iter().find(|r| r.metric == metric && r.system == system)
    }

    /// A line naming the test, the interval and the correction (the table's caption).
    pub fn method_line(&self) -> String {
        let t = &self.settings.test;
        let holm = if self.settings.holm {
            format!(", Holm-corrected over {} systems", self.systems.len() - 1)
        } else {
            String::new()
        };
        format!(
            "paired {} test (two-sided, {} trials, seed {}){holm}; {}% percentile-bootstrap \
             interval of the difference ({} resamples, seed {}); * p < {}",
            t.test.name(),
            t.trials,
            t.seed,
            t.confidence * 100.0,
            t.trials,
            t.seed.wrapping_add(1),
            self.settings.alpha
        )
    }

    /// The tables: means (with `*` where the difference to the baseline is significant and the
    /// difference in brackets), then one line per system and metric with the interval, the
    /// p-value(s) and wins/ties/losses.
    pub fn table(&self) -> String {
        let name_width = self.systems.iter().map(|s| s.chars().count()).max().unwrap_or(6).max(6);
        let mut out = String::new();
        out.push_str(&format!("{:<name_width$}", "system"));
        for metric in &self.settings.metrics {
            out.push_str(&format!("  {metric:<18}"));
        }
        out.push('\n');
        for (index, name) in self.systems.iter().enumerate() {
            out.push_str(&format!("{name:<name_width$}"));
            for metric in &self.settings.metrics {
                let mean = self.means[metric][index];
                let cell = match self.row(metric, index) {
                    None => format!("{mean:.4}"),
                    Some(row) => {
                        let star = if row.deciding_p() < self.settings.alpha { "*" } else { " " };
                        format!("{mean:.4}{star} ({})", signed(row.outcome.difference))
                    }
                };
                out.push_str(&format!("  {cell:<18}"));
            }
            out.push('\n');
        }
        out.push('\n');
        let confidence = format!("{}% interval", self.settings.test.confidence * 100.0);
        out.push_str(&format!(
            "{:<10} {:<name_width$} {:>8}  {confidence:<20} {:>7}",
            "metric", "system", "Δ", "p"
        ));
        if self.settings.holm {
            out.push_str(&format!(" {:>7}", "p Holm"));
        }
        out.push_str("  wins/ties/losses\n");
        for row in &self.rows {
            let o = &row.outcome;
            let interval = format!("[{}, {}]", signed(o.interval.0), signed(o.interval.1));
            out.push_str(&format!(
                "{:<10} {:<name_width$} {:>8}  {interval:<20} {:>7.4}",
                row.metric,
                self.systems[row.system],
                signed(o.difference),
                o.p_value
            ));
            if let Some(p) = row.p_holm {
                out.push_str(&format!(" {p:>7.4}"));
            }
            out.push_str(&format!("  {}/{}/{}\n", o.wins, o.ties, o.losses));
        }
        out.lines().map(|line| format!("{}\n", line.trim_end())).collect()
    }

    /// The comparison as JSON (for scripts): settings, means, and one object per system and
    /// metric.
    pub fn to_json(&self) -> serde_json::Value {
        let t = &self.settings.test;
        let comparisons: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|row| {
                let o = &row.outcome;
                serde_json::json!({
                    "metric": row.metric,
                    "system": self.systems[row.system],
                    "baseline": self.systems[0],
                    "baseline_mean": o.baseline_mean,
                    "mean": o.system_mean,
                    "difference": o.difference,
                    "interval": [o.interval.0, o.interval.1],
                    "p_value": o.p_value,
                    "p_holm": row.p_holm,
                    "significant": row.deciding_p() < self.settings.alpha,
                    "wins": o.wins,
                    "ties": o.ties,
                    "losses": o.losses,
                })
            })
            .collect();
        serde_json::json!({
            "systems": self.systems,
            "baseline": self.systems[0],
            "num_queries": self.queries.len(),
            "metrics": self.settings.metrics,
            "test": {"name": t.test.name(), "two_sided": true, "trials": t.trials, "seed": t.seed},
            "interval": {
                "method": "percentile bootstrap",
                "confidence": t.confidence,
                "resamples": t.trials,
                "seed": t.seed.wrapping_add(1),
            },
            "holm": self.settings.holm,
            "alpha": self.settings.alpha,
            "means": self.means,
            "comparisons": comparisons,
        })
    }

    /// Per-query values as TSV with a header (`query metric system baseline value difference`),
    /// one line per query, metric and compared system: for plots of the differences.
    pub fn per_query_tsv(&self) -> String {
        let mut out = String::from("query\tmetric\tsystem\tbaseline\tvalue\tdifference\n");
        for row in &self.rows {
            for (query, (base, value)) in self.queries.iter().zip(&row.values) {
                out.push_str(&format!(
                    "{query}\t{}\t{}\t{base}\t{value}\t{}\n",
                    row.metric,
                    self.systems[row.system],
                    value - base
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(name: &str, values: &[(&str, f64)]) -> SystemScores {
        SystemScores {
            name: name.into(),
            per_query: values
                .iter()
                .map(|(q, v)| (q.to_string(), [("nDCG@10".to_string(), *v)].into()))
                .collect(),
        }
    }

    fn settings(holm: bool) -> CompareSettings {
        CompareSettings {
            metrics: vec!["nDCG@10".into()],
            test: TestSettings { trials: 2000, ..TestSettings::default() },
            holm,
            alpha: 0.05,
        }
    }

    #[test]
    fn three_systems_with_holm_and_per_query_differences() {
        let base = scores("base", &[("q1", 0.0), ("q2", 0.5), ("q3", 1.0), ("q4", 0.2)]);
        let same = scores("same", &[("q1", 0.0), ("q2", 0.5), ("q3", 1.0), ("q4", 0.2)]);
        let up = scores("up", &[("q1", 0.5), ("q2", 0.75), ("q3", 1.0), ("q4", 0.2)]);
        let comparison = compare_systems(&[base, same, up], &settings(true)).unwrap();
        assert_eq!(comparison.means["nDCG@10"], [0.425, 0.425, 0.6125]);
        let same_row = &comparison.rows[0];
        assert_eq!(same_row.outcome.p_value, 1.0);
        assert_eq!(same_row.p_holm, Some(1.0));
        let up_row = &comparison.rows[1];
        assert_eq!((up_row.outcome.wins, up_row.outcome.ties, up_row.outcome.losses), (2, 2, 0));
        assert!((up_row.outcome.difference - 0.1875).abs() < 1e-12);
        // Differences +0.5, +0.25, 0, 0: a sign flip reaches |mean| ≥ 0.1875 exactly when the
        // two non-zero ones keep the same sign (half of the patterns), so p ≈ 0.5; Holm doubles
        // the smaller p-value of the two comparisons (capped at 1).
        assert!((up_row.outcome.p_value - 0.5).abs() < 0.04, "{}", up_row.outcome.p_value);
        assert!((up_row.p_holm.unwrap() - (2.0 * up_row.outcome.p_value).min(1.0)).abs() < 1e-12);
        let tsv = comparison.per_query_tsv();
        assert!(tsv.contains("q1\tnDCG@10\tup\t0\t0.5\t0.5\n"), "{tsv}");
        assert_eq!(tsv.lines().count(), 1 + 2 * 4);
        let table = comparison.table();
        assert!(table.contains("up      0.6125  (+0.1875)"), "{table}");
        assert!(table.contains("p Holm"), "{table}");
        let json = comparison.to_json();
        assert_eq!(json["comparisons"][1]["wins"], 2);
        assert_eq!(json["comparisons"][1]["significant"], false);
    }

    #[test]
    fn different_queries_or_metrics_are_refused_with_what_to_do() {
        let base = scores("base", &[("q1", 0.0), ("q2", 0.5)]);
        let other = scores("other", &[("q1", 0.0), ("q3", 0.5)]);
        let err = compare_systems(&[base.clone(), other], &settings(false)).unwrap_err();
        assert!(err.to_string().contains("other lacks `q2`"), "{err}");
        let mut wrong_metric = settings(false);
        wrong_metric.metrics = vec!["R@1000".into()];
        let err = compare_systems(&[base.clone(), base.clone()], &wrong_metric).unwrap_err();
        assert!(err.to_string().contains("no R@1000 for query `q1`; its metrics are nDCG@10"));
        assert!(compare_systems(&[base], &settings(false)).is_err());
    }
}
