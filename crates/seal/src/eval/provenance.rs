//! What produced a run or a metrics file: the system and its settings, the model and index with
//! their sha256, the fusion and its inputs, the dataset's fingerprint and the query selection,
//! the `seal` build. `seal eval` stores it in `metrics.json` and beside every run file
//! (`<run>.provenance.json`, see [`super::origin`]), and refuses to evaluate a run on a dataset
//! other than its own.
//!
//! Useful for: answering "which model, adapter, index and settings made this number" months
//! later, and for refusing to mix runs of different datasets. Not for: reproducing a run by
//! itself (it records, it does not re-run), or timing (that is in `metrics.json`).

use super::dataset::Dataset;
use crate::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The version of the provenance layout (a reader refuses a newer one).
pub const PROVENANCE_VERSION: u32 = 1;

/// Everything that determines a run, as recorded when it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// [`PROVENANCE_VERSION`].
    pub version: u32,
    /// The `seal` build: version and the git commit it was built from ([`seal_build`]).
    pub seal: String,
    /// The system's name in tables and run files (`bm25`, `seal`, `hybrid`, `a+b`).
    pub system: String,
    /// The dataset and split the run answers.
    pub dataset: DatasetFingerprint,
    /// Which of the split's judged queries were run.
    pub queries: QuerySelection,
    /// Passages retrieved per query.
    pub depth: usize,
    /// BM25's parameters, when BM25 is (part of) the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bm25: Option<Bm25Record>,
    /// SEAL's model, adapter, index and settings, when SEAL is (part of) the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_system: Option<SealRecord>,
    /// How two rankings were fused, for a hybrid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<FusionRecord>,
    /// The run files this run was made from (`seal eval --from-runs`), with their own provenance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<RunInput>,
}

/// The content of a dataset as a run depends on it: a run is only comparable with runs of the
/// same corpus and split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetFingerprint {
    /// The folder name (`scifact`).
    pub name: String,
    /// The qrels split (`test`).
    pub split: String,
    /// Whether `distractors.jsonl` was added to the corpus.
    pub with_distractors: bool,
    /// sha256 over the corpus files read, in order ([`sha256_files`]).
    pub corpus_sha256: String,
    /// sha256 of `qrels/<split>.tsv`.
    pub qrels_sha256: String,
    /// sha256 of `queries.jsonl`.
    pub queries_sha256: String,
}

impl DatasetFingerprint {
    /// The fingerprint of a loaded dataset (reads its files again to hash them).
    ///
    /// # Errors
    ///
    /// When a file of the dataset cannot be read any more.
    pub fn of(dataset: &Dataset) -> Result<Self> {
        let qrels = dataset.dir.join("qrels").join(format!("{}.tsv", dataset.split));
        Ok(DatasetFingerprint {
            name: dataset.name.clone(),
            split: dataset.split.clone(),
            with_distractors: dataset.corpus_files.len() > 1,
            corpus_sha256: sha256_files(&dataset.corpus_files)?,
            qrels_sha256: sha256_file(&qrels)?,
            queries_sha256: sha256_file(&dataset.dir.join("queries.jsonl"))?,
        })
    }

    /// `scifact (test)`, `nq (test, with distractors)`.
    pub fn describe(&self) -> String {
        let distractors = if self.with_distractors { ", with distractors" } else { "" };
        format!("{} ({}{distractors})", self.name, self.split)
    }
}

/// Which judged queries of the split were run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuerySelection {
    /// `--queries` as given (a range or `@FILE`), if any.
    pub filter: Option<String>,
    /// `--limit`, if any.
    pub limit: Option<usize>,
    /// How many queries were run.
    pub count: usize,
    /// sha256 of the run query ids, sorted, one a line.
    pub ids_sha256: String,
}

impl QuerySelection {
    /// The selection of `dataset`'s evaluated queries, made with `filter` and `limit`.
    pub fn of(dataset: &Dataset, filter: Option<&str>, limit: Option<usize>) -> Self {
        let mut ids: Vec<&str> = dataset.queries.iter().map(|q| q.id.as_str()).collect();
        ids.sort_unstable();
        let mut hasher = Sha256::new();
        for id in &ids {
            hasher.update(id.as_bytes());
            hasher.update(b"\n");
        }
        QuerySelection {
            filter: filter.map(str::to_owned),
            limit,
            count: ids.len(),
            ids_sha256: hex(&hasher.finalize()),
        }
    }
}

/// BM25's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bm25Record {
    /// k1.
    pub k1: f64,
    /// b.
    pub b: f64,
    /// One-byte document lengths (Lucene's way) instead of exact ones.
    pub quantized_lengths: bool,
}

/// SEAL's side of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealRecord {
    /// The model searched with (the index's own unless `--model` named another).
    pub model: FileRecord,
    /// The trained adapter merged into the model, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<FileRecord>,
    /// The index searched ([`sha256_dir`] of its folder).
    pub index: FileRecord,
    /// The search settings that matter for results: `beam`, `max_body_tokens`,
    /// `max_title_tokens`, `title_prefixes`, `prompt`, `titles`, `query_ngrams`, `ranking`,
    /// `whole_words`, `length_norm`, `precision`, and `all`: every setting, as Rust prints it.
    pub settings: BTreeMap<String, serde_json::Value>,
}

impl SealRecord {
    /// The settings map of [`Self::settings`] for `settings`, searched at `precision`.
    pub fn settings_of(
        settings: &crate::searcher::SearchSettings,
        precision: &str,
    ) -> BTreeMap<String, serde_json::Value> {
        let s = settings;
        [
            ("beam", s.beam.beam.into()),
            ("max_body_tokens", s.beam.max_body_tokens.into()),
            ("max_title_tokens", s.beam.max_title_tokens.into()),
            ("title_prefixes", s.beam.title_prefixes.into()),
            ("prompt", s.prompt.to_string().into()),
            ("titles", s.titles.into()),
            ("query_ngrams", s.query_ngrams.into()),
            ("ranking", s.scoring.ranking.to_string().into()),
            ("whole_words", s.scoring.whole_words.into()),
            ("length_norm", s.scoring.length_norm.into()),
            ("precision", precision.into()),
            ("all", format!("{:?}", SearchSettingsForRecord(s)).into()),
        ]
        .into_iter()
        .map(|(k, v): (&str, serde_json::Value)| (k.to_owned(), v))
        .collect()
    }
}

/// Prints every setting except the per-call ones (`k`, `evidence`).
struct SearchSettingsForRecord<'a>(&'a crate::searcher::SearchSettings);

impl std::fmt::Debug for SearchSettingsForRecord<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        f.debug_struct("SearchSettings")
            .field("beam", &s.beam)
            .field("prompt", &s.prompt)
            .field("titles", &s.titles)
            .field("query_ngrams", &s.query_ngrams)
            .field("scoring", &s.scoring)
            .finish()
    }
}

/// A file or folder that a run depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The name or path it was given as.
    pub name: String,
    /// Its sha256 ([`sha256_file`], or [`sha256_dir`] for a folder).
    pub sha256: String,
}

/// How a hybrid fused its two rankings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusionRecord {
    /// `rrf`, `minmax` or `zscore`.
    pub method: String,
    /// The first ranking's weight (the second gets 1 − weight).
    pub weight: f64,
    /// The name of the ranking the weight applies to.
    pub weight_on: String,
    /// RRF's constant k, for `rrf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrf_k: Option<f64>,
}

impl FusionRecord {
    /// `z-score interpolation, weight 0.2 on seal`.
    pub fn describe(&self) -> String {
        let method = match self.method.as_str() {
            "zscore" => "z-score interpolation".to_owned(),
            "minmax" => "min-max interpolation".to_owned(),
            "rrf" => format!("reciprocal-rank fusion, k = {}", self.rrf_k.unwrap_or(60.0)),
            other => other.to_owned(),
        };
        format!("{method}, weight {} on {}", self.weight, self.weight_on)
    }
}

/// A run file a run was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInput {
    /// Its name in tables (the folder of `run.trec`, else the file stem).
    pub name: String,
    /// Its path as given.
    pub path: String,
    /// sha256 of the file.
    pub sha256: String,
    /// Its own provenance, when it has one.
    pub provenance: Option<Box<Provenance>>,
}

impl Provenance {
    /// A record of `system` on `dataset` with nothing about the system yet.
    pub fn new(
        system: &str,
        dataset: DatasetFingerprint,
        queries: QuerySelection,
        depth: usize,
    ) -> Self {
        Provenance {
            version: PROVENANCE_VERSION,
            seal: seal_build(),
            system: system.to_owned(),
            dataset,
            queries,
            depth,
            bm25: None,
            seal_system: None,
            fusion: None,
            inputs: Vec::new(),
        }
    }
}

/// `seal <version> (<git commit>)`: the build that is running. The commit is the one checked
/// out when the binary was compiled (uncommitted changes are not recorded); `unknown` when the
/// source was not a git checkout.
pub fn seal_build() -> String {
    format!(
        "seal {} ({})",
        env!("CARGO_PKG_VERSION"),
        option_env!("SEAL_GIT_COMMIT").filter(|c| !c.is_empty()).unwrap_or("unknown")
    )
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_file_into(path: &Path, hasher: &mut Sha256) -> Result<()> {
    let io = |e: std::io::Error| {
        Error::new(ErrorKind::Io, format!("cannot read {} to fingerprint it", path.display()))
            .with_source(e)
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(io)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buffer[..n]);
    }
}

/// sha256 of a file's bytes, lower-case hex.
///
/// # Errors
///
/// When the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    hash_file_into(path, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// sha256 of bytes, lower-case hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// sha256 of several files: of one line `<file name> <sha256 of the file>` per file, in order.
/// A single file's name is part of it, so `corpus.jsonl` alone and with `distractors.jsonl`
/// differ.
///
/// # Errors
///
/// When a file cannot be read.
pub fn sha256_files(paths: &[std::path::PathBuf]) -> Result<String> {
    let mut lines = String::new();
    for path in paths {
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        lines.push_str(&format!("{name} {}\n", sha256_file(path)?));
    }
    Ok(sha256_bytes(lines.as_bytes()))
}

/// sha256 of a folder: [`sha256_files`] of its regular files, sorted by name (sub-folders are
/// not read).
///
/// # Errors
///
/// When the folder or a file cannot be read.
pub fn sha256_dir(dir: &Path) -> Result<String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot list {} to fingerprint it", dir.display()))
            .with_source(e)
    })?;
    let mut files: Vec<std::path::PathBuf> =
        entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    sha256_files(&files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_bytes() {
        // sha256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn provenance_round_trips_through_json() {
        let dataset = DatasetFingerprint {
            name: "tiny".into(),
            split: "test".into(),
            with_distractors: true,
            corpus_sha256: "c".repeat(64),
            qrels_sha256: "q".repeat(64),
            queries_sha256: "u".repeat(64),
        };
        let queries = QuerySelection {
            filter: Some("q1-q3".into()),
            limit: Some(2),
            count: 2,
            ids_sha256: "i".repeat(64),
        };
        let mut inner = Provenance::new("seal", dataset.clone(), queries.clone(), 100);
        inner.seal_system = Some(SealRecord {
            model: FileRecord { name: "smollm2-135m".into(), sha256: "m".repeat(64) },
            adapter: Some(FileRecord { name: "/a".into(), sha256: "a".repeat(64) }),
            index: FileRecord { name: "/i".into(), sha256: "x".repeat(64) },
            settings: SealRecord::settings_of(&Default::default(), "int8"),
        });
        let mut outer = Provenance::new("seal+bm25", dataset, queries, 100);
        outer.bm25 = Some(Bm25Record { k1: 0.9, b: 0.4, quantized_lengths: true });
        outer.fusion = Some(FusionRecord {
            method: "rrf".into(),
            weight: 0.3,
            weight_on: "seal".into(),
            rrf_k: Some(60.0),
        });
        outer.inputs.push(RunInput {
            name: "seal".into(),
            path: "x/run.trec".into(),
            sha256: "r".repeat(64),
            provenance: Some(Box::new(inner)),
        });
        let json = serde_json::to_string(&outer).unwrap();
        let back: Provenance = serde_json::from_str(&json).unwrap();
        assert_eq!(back, outer);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let settings = &value["inputs"][0]["provenance"]["seal_system"]["settings"];
        assert_eq!(settings["precision"], "int8");
        assert_eq!(settings["beam"], 15);
        assert_eq!(value["fusion"]["rrf_k"], 60.0);
        assert!(value["seal"].as_str().unwrap().starts_with("seal 0."));
    }
}
