//! Where `seal eval` writes (run.trec with its provenance sidecar, metrics.json; every file
//! through a temporary file and a rename) and what it prints.
//!
//! Not for: computing anything.

use super::EvalArgs;
use anyhow::Context;
use seal::eval::origin::{sidecar_path, write_file, write_run_with_provenance};
use seal::eval::run::write_trec_run;
use seal::eval::EvalReport;
use std::path::{Path, PathBuf};

/// `--out`, or `seal-eval/<dataset>-<split>-<system>[-distractors]`.
pub(super) fn output_dir(args: &EvalArgs, report: &EvalReport) -> PathBuf {
    match &args.out {
        Some(out) => out.clone(),
        None => PathBuf::from("seal-eval").join(format!(
            "{}-{}-{}{}",
            report.dataset,
            report.split,
            report.system.replace('+', "_"),
            if args.with_distractors { "-distractors" } else { "" }
        )),
    }
}

/// Writes `json` (pretty, with a final newline) to `path`.
pub(super) fn write_json(path: &Path, json: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(json)? + "\n";
    Ok(write_file(path, text.as_bytes())?)
}

/// Writes `run.trec`, its provenance sidecar and `metrics.json` into `out`.
pub(super) fn write_outputs(out: &Path, report: &EvalReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let run_path = out.join("run.trec");
    match &report.provenance {
        Some(provenance) => {
            write_run_with_provenance(&run_path, &report.run, &report.system, provenance)?
        }
        None => write_trec_run(&run_path, &report.run, &report.system)?,
    }
    let metrics_path = out.join("metrics.json");
    write_json(&metrics_path, &report.to_json())?;
    let sidecar = if report.provenance.is_some() {
        format!(" (provenance in {})", sidecar_path(&run_path).display())
    } else {
        String::new()
    };
    eprintln!("wrote {}{sidecar} and {}", run_path.display(), metrics_path.display());
    Ok(())
}

/// Prints the report: a table, or JSON without the per-query metrics.
pub(super) fn print_report(report: &EvalReport, json: bool) -> anyhow::Result<()> {
    if json {
        let mut json = report.to_json();
        if let Some(object) = json.as_object_mut() {
            object.remove("per_query");
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
