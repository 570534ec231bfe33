//! Run files with their provenance: writing `run.trec` with its sidecar
//! `run.trec.provenance.json`, reading a run back with whatever says where it came from, and
//! the check that a run fits the dataset it is about to be measured on.
//!
//! Useful for: `seal eval --from-runs` and `seal eval compare`, which must not measure a run of
//! another dataset (every query would silently score 0). Not for: the TREC format itself
//! ([`super::run`]), or the provenance fields ([`super::provenance`]).
//!
//! # Why a sidecar
//!
//! trec_eval, pytrec_eval and ir_measures reject comment lines in a run file, so the run stays
//! plain TREC and its provenance goes beside it (`<run file>.provenance.json`), with the run's
//! sha256: a sidecar that does not describe the file next to it (the run was replaced) is
//! ignored with a note. Runs written before provenance existed are accepted with a note that
//! their dataset cannot be checked (their `metrics.json` still names a dataset and split).

use super::dataset::Dataset;
use super::provenance::{sha256_bytes, DatasetFingerprint, Provenance, PROVENANCE_VERSION};
use super::run::{format_trec_run, parse_trec_run, Run};
use crate::docstore::write_atomically;
use crate::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The sidecar of a run file: `<run file>` + this.
pub const SIDECAR_SUFFIX: &str = ".provenance.json";

/// What a sidecar holds.
#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    /// sha256 of the run file it describes.
    run_sha256: String,
    provenance: Provenance,
}

/// The sidecar path of `run_path`.
pub fn sidecar_path(run_path: &Path) -> PathBuf {
    let mut name = run_path.file_name().unwrap_or_default().to_os_string();
    name.push(SIDECAR_SUFFIX);
    run_path.with_file_name(name)
}

/// Writes `run` as a TREC run file tagged `tag` (see [`super::run::write_trec_run`]) and its
/// provenance beside it, each through a temporary file and a rename.
///
/// # Errors
///
/// When a file cannot be written.
pub fn write_run_with_provenance(
    path: &Path,
    run: &Run,
    tag: &str,
    provenance: &Provenance,
) -> Result<()> {
    let text = format_trec_run(run, tag);
    let sidecar =
        Sidecar { run_sha256: sha256_bytes(text.as_bytes()), provenance: provenance.clone() };
    let json = serde_json::to_string_pretty(&sidecar)
        .map_err(|e| Error::new(ErrorKind::Other, "cannot encode the provenance").with_source(e))?;
    write_atomically(path, text.as_bytes())?;
    write_atomically(&sidecar_path(path), (json + "\n").as_bytes())
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so that a
/// crash never leaves a half-written file under the final name (for `metrics.json` and the
/// other outputs of `seal eval`).
///
/// # Errors
///
/// When the file cannot be written.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, bytes)
}

/// What is known about where a run came from.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOrigin {
    /// Its sidecar, which describes this very file.
    Recorded(Box<Provenance>),
    /// No usable sidecar; `why` says what was found instead (for the note on stderr), and
    /// `claimed` is the (dataset, split) of a `metrics.json` beside it, if any.
    Unrecorded {
        /// Why the origin is unknown.
        why: String,
        /// What an old `metrics.json` beside the run says: (dataset name, split).
        claimed: Option<(String, String)>,
    },
}

/// A run read from a file, with its origin.
#[derive(Debug, Clone)]
pub struct RunFile {
    /// The path as given.
    pub path: PathBuf,
    /// A short name for tables: the folder of a `run.trec`, else the file stem.
    pub name: String,
    /// The results.
    pub run: Run,
    /// sha256 of the file.
    pub sha256: String,
    /// Where it came from.
    pub origin: RunOrigin,
}

impl RunFile {
    /// Reads `path`: a run file, or a `seal eval --out` folder holding `run.trec`.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not a TREC run, or its sidecar is unreadable or from a
    /// newer `seal`.
    pub fn read(path: &Path) -> Result<Self> {
        let path = if path.is_dir() { path.join("run.trec") } else { path.to_path_buf() };
        let bytes = std::fs::read(&path).map_err(|e| {
            let hint = if path.file_name().is_some_and(|n| n == "run.trec") {
                " (give a run file, or a `seal eval --out` folder that holds run.trec)"
            } else {
                ""
            };
            Error::new(ErrorKind::Io, format!("cannot read the run {}{hint}", path.display()))
                .with_source(e)
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let run = parse_trec_run(&text, &path)?;
        let sha256 = sha256_bytes(&bytes);
        let origin = read_origin(&path, &sha256)?;
        Ok(RunFile { name: run_name(&path), path, run, sha256, origin })
    }

    /// The provenance, when recorded.
    pub fn provenance(&self) -> Option<&Provenance> {
        match &self.origin {
            RunOrigin::Recorded(p) => Some(p),
            RunOrigin::Unrecorded { .. } => None,
        }
    }

    /// Checks that this run was made on `fingerprint`'s corpus and split and answers some of
    /// `dataset`'s evaluated queries; returns the notes to print (an unchecked origin, changed
    /// qrels or queries, queries missing from the run).
    ///
    /// # Errors
    ///
    /// A run recorded on another corpus or split, or one that answers none of the evaluated
    /// queries; the message says which dataset it was made on and what to pass.
    pub fn check_fits(
        &self,
        dataset: &Dataset,
        fingerprint: &DatasetFingerprint,
    ) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        let shown = self.path.display();
        let refuse = |message: String| Err(Error::new(ErrorKind::InvalidInput, message));
        match &self.origin {
            RunOrigin::Recorded(p) => {
                let made = &p.dataset;
                if made.corpus_sha256 != fingerprint.corpus_sha256 {
                    let distractors = if made.with_distractors != fingerprint.with_distractors {
                        if made.with_distractors {
                            "; it was made with --with-distractors"
                        } else {
                            "; it was made without --with-distractors"
                        }
                    } else {
                        ""
                    };
                    return refuse(format!(
                        "the run {shown} was made on {}, not on {}: its corpus differs (sha256 \
                         {} vs {}){distractors}. Pass the --dataset it was made on, or re-run \
                         the system on this one",
                        made.describe(),
                        fingerprint.describe(),
                        short(&made.corpus_sha256),
                        short(&fingerprint.corpus_sha256)
                    ));
                }
                if made.split != fingerprint.split {
                    return refuse(format!(
                        "the run {shown} answers the `{}` queries of {}, not the `{}` ones: pass \
                         --split {}",
                        made.split, made.name, fingerprint.split, made.split
                    ));
                }
                if made.qrels_sha256 != fingerprint.qrels_sha256 {
                    notes.push(format!(
                        "{shown}: the judgments of split `{}` changed since the run was made; it \
                         is measured with the current ones",
                        made.split
                    ));
                }
                if made.queries_sha256 != fingerprint.queries_sha256 {
                    notes.push(format!(
                        "{shown}: queries.jsonl changed since the run was made; its results may \
                         answer older query texts"
                    ));
                }
            }
            RunOrigin::Unrecorded { why, claimed } => {
                let claim = match claimed {
                    Some((name, split)) => {
                        format!("; its metrics.json says {name} ({split})")
                    }
                    None => String::new(),
                };
                notes.push(format!("{shown}: {why}, so its dataset cannot be checked{claim}"));
            }
        }
        let evaluated: Vec<&str> = dataset.queries.iter().map(|q| q.id.as_str()).collect();
        let missing: Vec<&str> =
            evaluated.iter().copied().filter(|q| !self.run.contains_key(*q)).collect();
        if !evaluated.is_empty() && missing.len() == evaluated.len() {
            let theirs: Vec<&str> = self.run.keys().take(3).map(String::as_str).collect();
            let ours: Vec<&str> = evaluated.iter().take(3).copied().collect();
            return refuse(format!(
                "the run {shown} answers none of the {} evaluated queries of {} (its query ids: \
                 {}; the dataset's: {}): it was made on another dataset or split. Pass the \
                 --dataset and --split it was made on",
                evaluated.len(),
                fingerprint.describe(),
                if theirs.is_empty() { "none".to_owned() } else { theirs.join(", ") },
                ours.join(", ")
            ));
        }
        if !missing.is_empty() {
            notes.push(format!(
                "{shown}: no results for {} of the {} evaluated queries (e.g. {}): they score 0 \
                 (trec_eval -c); narrow the queries with --queries to evaluate only the others",
                missing.len(),
                evaluated.len(),
                missing.iter().take(3).copied().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(notes)
    }
}

fn short(sha: &str) -> &str {
    &sha[..12.min(sha.len())]
}

/// The folder name of a `run.trec` (`seal eval --out` folders are named after what they hold),
/// else the file stem.
pub fn run_name(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    if path.file_name().is_some_and(|n| n == "run.trec") {
        let folder = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent()?.file_name().map(|n| n.to_string_lossy().into_owned()));
        if let Some(folder) = folder {
            return folder;
        }
    }
    stem.unwrap_or_else(|| "run".to_owned())
}

fn read_origin(path: &Path, run_sha256: &str) -> Result<RunOrigin> {
    let sidecar_file = sidecar_path(path);
    if let Ok(text) = std::fs::read_to_string(&sidecar_file) {
        let bad = |what: String| {
            Error::new(ErrorKind::Corpus, format!("{}: {what}", sidecar_file.display()))
        };
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not JSON ({e}); delete it to use the run unchecked")))?;
        let version = value.pointer("/provenance/version").and_then(|v| v.as_u64());
        if version.is_some_and(|v| v > u64::from(PROVENANCE_VERSION)) {
            return Err(bad(format!(
                "provenance version {} is newer than this seal reads ({PROVENANCE_VERSION}); \
                 use a newer seal",
                version.unwrap_or_default()
            )));
        }
        let sidecar: Sidecar = serde_json::from_value(value).map_err(|e| {
            bad(format!("unreadable provenance ({e}); delete it to use the run unchecked"))
        })?;
        if sidecar.run_sha256 == run_sha256 {
            return Ok(RunOrigin::Recorded(Box::new(sidecar.provenance)));
        }
        return Ok(RunOrigin::Unrecorded {
            why: format!(
                "{} describes another version of the run (changed since)",
                sidecar_file.display()
            ),
            claimed: None,
        });
    }
    let metrics = path.with_file_name("metrics.json");
    let claimed = std::fs::read_to_string(&metrics)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|m| Some((m["dataset"].as_str()?.to_owned(), m["split"].as_str()?.to_owned())))
        .filter(|_| path.file_name().is_some_and(|n| n == "run.trec"));
    Ok(RunOrigin::Unrecorded {
        why: "it has no provenance (written before seal recorded it, or by another tool)".into(),
        claimed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::provenance::QuerySelection;

    fn fingerprint(corpus: &str, split: &str) -> DatasetFingerprint {
        DatasetFingerprint {
            name: "tiny".into(),
            split: split.into(),
            with_distractors: false,
            corpus_sha256: corpus.repeat(64),
            qrels_sha256: "q".repeat(64),
            queries_sha256: "u".repeat(64),
        }
    }

    fn dataset() -> Dataset {
        Dataset {
            name: "tiny".into(),
            dir: ".".into(),
            split: "test".into(),
            corpus: vec![],
            corpus_files: vec![],
            corpus_stats: Default::default(),
            queries: ["q1", "q2"]
                .iter()
                .map(|id| crate::eval::Query {
                    id: id.to_string(),
                    text: "t".into(),
                    answers: vec![],
                })
                .collect(),
            qrels: Default::default(),
        }
    }

    fn selection() -> QuerySelection {
        QuerySelection { filter: None, limit: None, count: 2, ids_sha256: String::new() }
    }

    #[test]
    fn a_run_round_trips_with_its_provenance_and_is_checked_against_the_dataset() {
        let dir = std::env::temp_dir().join(format!("seal-origin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.trec");
        let mut run = Run::new();
        run.insert("q1".into(), vec![("d1".into(), 2.0), ("d2".into(), 1.0)]);
        let provenance = Provenance::new("bm25", fingerprint("c", "test"), selection(), 10);
        write_run_with_provenance(&path, &run, "bm25", &provenance).unwrap();
        let back = RunFile::read(&dir).unwrap();
        assert_eq!(back.run, run);
        assert_eq!(back.provenance(), Some(&provenance));
        assert_eq!(back.name, format!("seal-origin-{}", std::process::id()));

        // Same dataset: accepted, with a note that q2 has no results.
        let notes = back.check_fits(&dataset(), &fingerprint("c", "test")).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("no results for 1 of the 2 evaluated queries (e.g. q2)"));
        // Another corpus, another split: refused, saying which.
        let other = back.check_fits(&dataset(), &fingerprint("d", "test")).unwrap_err();
        assert!(
            other.to_string().contains("its corpus differs (sha256 cccccccccccc vs dddddddddddd)"),
            "{other}"
        );
        let split = back.check_fits(&dataset(), &fingerprint("c", "dev")).unwrap_err();
        assert!(split.to_string().contains("pass --split test"), "{split}");

        // An edited run no longer matches its sidecar: unchecked, with a note.
        std::fs::write(&path, "q1 Q0 d2 1 5 x\n").unwrap();
        let edited = RunFile::read(&path).unwrap();
        assert!(edited.provenance().is_none());
        let notes = edited.check_fits(&dataset(), &fingerprint("d", "test")).unwrap();
        assert!(notes[0].contains("describes another version of the run"), "{notes:?}");

        // No sidecar, an old metrics.json beside it, no query in common: refused.
        std::fs::remove_file(sidecar_path(&path)).unwrap();
        std::fs::write(&path, "x9 Q0 d2 1 5 x\n").unwrap();
        std::fs::write(dir.join("metrics.json"), r#"{"dataset": "nq", "split": "test"}"#).unwrap();
        let legacy = RunFile::read(&path).unwrap();
        assert_eq!(
            legacy.origin,
            RunOrigin::Unrecorded {
                why: "it has no provenance (written before seal recorded it, or by another tool)"
                    .into(),
                claimed: Some(("nq".into(), "test".into()))
            }
        );
        let none = legacy.check_fits(&dataset(), &fingerprint("c", "test")).unwrap_err();
        assert!(none.to_string().contains("answers none of the 2 evaluated queries"), "{none}");
        assert!(none.to_string().contains("its query ids: x9; the dataset's: q1, q2"), "{none}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
