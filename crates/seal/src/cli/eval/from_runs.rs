//! `seal eval --from-runs`: measuring saved runs (one as it is, two fused) and `--fusion-grid`.
//! Every run is checked against the dataset first (a run of another dataset or split is refused;
//! one without provenance is measured with a note), and the result records its inputs' sha256
//! and provenance and the fusion used.
//!
//! Not for: running a system ([`super::systems`]).

use super::Evaluation;
use anyhow::{bail, Context};
use seal::eval::fusion::{fuse_runs, FusionMethod, Normalization};
use seal::eval::harness::evaluate_run;
use seal::eval::origin::RunFile;
use seal::eval::provenance::RunInput;
use seal::eval::EvalReport;

/// Reads the `--from-runs` files and checks each against the dataset, printing the notes.
fn read_checked_runs(evaluation: &Evaluation) -> anyhow::Result<Vec<RunFile>> {
    let mut runs = Vec::new();
    for path in &evaluation.args.from_runs {
        let run = RunFile::read(path)?;
        for note in run.check_fits(&evaluation.dataset, &evaluation.fingerprint)? {
            eprintln!("note: {note}");
        }
        runs.push(run);
    }
    Ok(runs)
}

fn input_record(run: &RunFile) -> RunInput {
    RunInput {
        name: run.name.clone(),
        path: run.path.display().to_string(),
        sha256: run.sha256.clone(),
        provenance: run.provenance().cloned().map(Box::new),
    }
}

/// One run measured as it is, or two fused with `--fusion`.
pub(super) fn evaluate_from_runs(evaluation: &Evaluation) -> anyhow::Result<EvalReport> {
    let runs = read_checked_runs(evaluation)?;
    let dataset = &evaluation.dataset;
    let (report, provenance) = match runs.as_slice() {
        [single] => {
            let report = evaluate_run(dataset, single.run.clone(), &single.name);
            (report, evaluation.provenance(&single.name))
        }
        [first, second] => {
            let name = format!("{}+{}", first.name, second.name);
            let (method, fusion) = evaluation.fusion(&first.name);
            eprintln!("fusing {} and {} by {}", first.name, second.name, fusion.describe());
            let fused = fuse_runs(&first.run, &second.run, method, evaluation.args.depth);
            let mut provenance = evaluation.provenance(&name);
            provenance.fusion = Some(fusion);
            (evaluate_run(dataset, fused, &name), provenance)
        }
        _ => bail!("--from-runs takes one run (measured) or two (fused)"),
    };
    let mut provenance = provenance;
    provenance.inputs = runs.iter().map(input_record).collect();
    let mut report = report;
    report.provenance = Some(provenance);
    Ok(report)
}

/// `--fusion-grid`: every fusion setting of the two runs, measured on the dataset's queries.
pub(super) fn fusion_grid(evaluation: &Evaluation) -> anyhow::Result<()> {
    let args = evaluation.args;
    let dataset = &evaluation.dataset;
    let runs = read_checked_runs(evaluation)?;
    let [first, second] = runs.as_slice() else {
        bail!("--fusion-grid needs two --from-runs files: the SEAL run first, then the BM25 run");
    };
    let mut methods: Vec<(String, f64, FusionMethod)> = Vec::new();
    for step in 0..=10 {
        let weight = f64::from(step) / 10.0;
        for k in [10.0, 60.0] {
            methods.push((
                format!("rrf k={k}"),
                weight,
                FusionMethod::ReciprocalRank { k, weight },
            ));
        }
        for (name, normalization) in
            [("minmax", Normalization::MinMax), ("zscore", Normalization::ZScore)]
        {
            methods.push((
                name.to_string(),
                weight,
                FusionMethod::Interpolation { weight, normalization },
            ));
        }
    }
    let mut rows = Vec::new();
    for (name, weight, method) in methods {
        let fused = fuse_runs(&first.run, &second.run, method, args.depth);
        rows.push((name.clone(), weight, evaluate_run(dataset, fused, &name)));
    }
    let columns: Vec<&str> = rows[0].2.metric_names();
    let columns: Vec<&str> = columns
        .into_iter()
        .filter(|c| ["nDCG@10", "R@100", "answer@5", "answer@20", "MRR@10"].contains(c))
        .collect();
    let mut json_rows = Vec::new();
    println!(
        "fusion grid of {} and {} on {} ({}, {} queries); weight = {}'s share",
        first.name,
        second.name,
        dataset.name,
        dataset.split,
        dataset.queries.len(),
        first.name
    );
    let header: Vec<String> = columns.iter().map(|c| format!("{c:>10}")).collect();
    println!("{:<12} {:>6} {}", "method", "weight", header.join(" "));
    for (name, weight, report) in &rows {
        let values: Vec<String> =
            columns.iter().map(|c| format!("{:>10.4}", report.mean[*c])).collect();
        println!("{name:<12} {weight:>6.1} {}", values.join(" "));
        let metrics: serde_json::Map<String, serde_json::Value> =
            columns.iter().map(|c| (c.to_string(), report.mean[*c].into())).collect();
        json_rows.push(serde_json::json!({"method": name, "weight": weight, "metrics": metrics}));
    }
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let path = out.join("fusion-grid.json");
        let provenance = serde_json::json!({
            "dataset": evaluation.fingerprint,
            "queries": evaluation.selection,
            "inputs": [input_record(first), input_record(second)],
            "seal": seal::eval::provenance::seal_build(),
        });
        let json = serde_json::json!({"rows": json_rows, "provenance": provenance});
        super::output::write_json(&path, &json)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
