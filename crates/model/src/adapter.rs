//! Trained weights on disk, and putting them into the inference model.
//!
//! An adapter directory holds `adapter.safetensors` (LoRA `A`/`B` pairs named
//! `blk.N.<proj>.lora_a|lora_b`, or, after full fine-tuning, every changed tensor under its GGUF
//! name) and `manifest.json` ([`AdapterManifest`]): the base model's sha256 (the same
//! fingerprint index manifests record, [`crate::hub::fingerprint`]) and the name of the prompt
//! style the model was trained with, which search must use.
//!
//! Useful for: the trainers (writing, [`write_adapter`]), search (merging into the loaded model,
//! [`load_model_with_adapter`]) and `seal model merge` (writing a merged GGUF,
//! [`write_merged_gguf`]). Not for: training itself, or what a prompt style means (`seal`).
//!
//! Merging computes `W + (α/r)·B·A` for each adapted matrix from the exactly dequantized base
//! weight and stores the result as [`MergeFormat::Q8_0`] (default: the inference kernels stay
//! quantized, ~1/4 the memory of f32) or [`MergeFormat::F32`] (exact). A merged GGUF records the
//! base model's fingerprint under [`BASE_FINGERPRINT_KEY`], so an index built with the base
//! model opens with it: the FM-index depends only on the tokenizer, which training never changes.
//!
//! **Invariant**: a directory is always whole: the tensors and the manifest are each written to
//! a temporary file and renamed, the manifest last, so a crash mid-write leaves the previous
//! adapter readable.

use crate::error::candle_err;
use crate::gguf::GgufFile;
use crate::llama::LlamaModel;
use crate::{hub, LanguageModel, Precision};
use crate::{Error, ErrorKind, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// GGUF metadata key of a merged model: the sha256 of the base model it was merged from.
pub const BASE_FINGERPRINT_KEY: &str = "seal.base_model.sha256";
/// GGUF metadata key of a merged model: the prompt style it was trained with.
pub const PROMPT_STYLE_KEY: &str = "seal.prompt_style";

const MANIFEST: &str = "manifest.json";
const TENSORS: &str = "adapter.safetensors";
const FORMAT: &str = "seal-adapter";

/// The base model an adapter was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseModel {
    /// The name or path it was given as.
    pub name: String,
    /// sha256 of the GGUF file.
    pub fingerprint: String,
}

/// `manifest.json` of an adapter directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterManifest {
    /// Always `seal-adapter`.
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// `lora` or `full`.
    pub kind: String,
    /// The model it applies to.
    pub base_model: BaseModel,
    /// The name of the prompt style of the training pairs: search must use it.
    pub prompt_style: String,
    /// LoRA rank (0 for full weights).
    pub rank: usize,
    /// LoRA α (the update is scaled by α / rank).
    pub alpha: f64,
    /// Free-form facts about the run (steps, pairs, losses, seconds), for people.
    #[serde(default)]
    pub training: serde_json::Value,
}

impl AdapterManifest {
    /// The manifest of a new adapter: `kind` is `full` (rank and α 0) or `lora`.
    pub fn new(
        kind: &str,
        base_model: BaseModel,
        prompt_style: &str,
        rank: usize,
        alpha: f64,
        training: serde_json::Value,
    ) -> Self {
        AdapterManifest {
            format: FORMAT.into(),
            version: 1,
            kind: kind.into(),
            base_model,
            prompt_style: prompt_style.into(),
            rank,
            alpha,
            training,
        }
    }
}

/// How merged matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeFormat {
    /// ggml `Q8_0` (8-bit blocks): fast kernels, ~0.4% relative weight error.
    #[default]
    Q8_0,
    /// Dense `f32`: exact.
    F32,
}

impl MergeFormat {
    fn ggml(self) -> GgmlDType {
        match self {
            MergeFormat::Q8_0 => GgmlDType::Q8_0,
            MergeFormat::F32 => GgmlDType::F32,
        }
    }
}

/// An adapter read from disk.
pub struct Adapter {
    /// Its manifest.
    pub manifest: AdapterManifest,
    /// Its tensors by name.
    pub tensors: HashMap<String, Tensor>,
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("cannot {what} {}", path.display())).with_source(e)
}

/// Writes an adapter directory: `tensors` (dense, by name) and then `manifest`, each to a
/// temporary file renamed into place.
///
/// # Errors
/// The directory cannot be written.
pub fn write_adapter(
    dir: &Path,
    tensors: &HashMap<String, Tensor>,
    manifest: &AdapterManifest,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, "create", e))?;
    let path = dir.join(TENSORS);
    let tmp = dir.join(format!("{TENSORS}.tmp"));
    candle_core::safetensors::save(tensors, &tmp)
        .map_err(candle_err(format!("cannot write {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, "write", e))?;
    let path = dir.join(MANIFEST);
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(manifest).expect("serializable") + "\n")
        .map_err(|e| io_err(&tmp, "write", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, "write", e))
}

/// Reads only an adapter's manifest.
///
/// # Errors
/// A missing or invalid manifest.
pub fn read_adapter_manifest(dir: &Path) -> Result<AdapterManifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read {}; is this a directory written by `seal train`?", path.display()),
        )
        .with_source(e)
    })?;
    let manifest: AdapterManifest = serde_json::from_str(&text).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not an adapter manifest", path.display()),
        )
        .with_source(e)
    })?;
    if manifest.format != FORMAT || manifest.version != 1 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is format {:?} version {}; this seal reads {FORMAT} version 1",
                path.display(),
                manifest.format,
                manifest.version
            ),
        ));
    }
    Ok(manifest)
}

/// Reads an adapter directory.
///
/// # Errors
/// Missing or invalid files.
pub fn load_adapter(dir: &Path) -> Result<Adapter> {
    let manifest = read_adapter_manifest(dir)?;
    let path = dir.join(TENSORS);
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
        .map_err(candle_err(format!("cannot read {}", path.display())))?;
    Ok(Adapter { manifest, tensors })
}

impl Adapter {
    /// The GGUF tensors this adapter changes, merged with `base`'s weights: name → new dense
    /// `f32` tensor.
    ///
    /// # Errors
    /// A tensor the base model lacks or with another shape.
    pub fn merged_tensors(&self, base: &Path) -> Result<HashMap<String, Tensor>> {
        let mut file = std::fs::File::open(base).map_err(|e| io_err(base, "open", e))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(candle_err(format!("{} is not a readable GGUF file", base.display())))?;
        let mut out = HashMap::new();
        let mut read = |name: &str| -> Result<Tensor> {
            if !content.tensor_infos.contains_key(name) {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("the adapter changes `{name}`, which {} does not have", base.display()),
                ));
            }
            content
                .tensor(&mut file, name, &Device::Cpu)
                .and_then(|q| q.dequantize(&Device::Cpu))
                .map_err(candle_err(format!("cannot read `{name}`")))
        };
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        for name in names {
            let t = &self.tensors[name];
            if self.manifest.kind == "full" {
                let base_t = read(name)?;
                if base_t.dims() != t.dims() {
                    return Err(shape_err(name, base_t.dims(), t.dims()));
                }
                out.insert(name.clone(), t.clone());
            } else if let Some(stem) = name.strip_suffix(".lora_a") {
                let b = self.tensors.get(&format!("{stem}.lora_b")).ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!("the adapter has `{name}` without its `lora_b`"),
                    )
                })?;
                let weight = format!("{stem}.weight");
                let w = read(&weight)?;
                let scale = self.manifest.alpha / self.manifest.rank.max(1) as f64;
                let delta = b
                    .matmul(t)
                    .and_then(|d| d * scale)
                    .map_err(candle_err("cannot merge".to_string()))?;
                if delta.dims() != w.dims() {
                    return Err(shape_err(&weight, w.dims(), delta.dims()));
                }
                out.insert(weight, (w + delta).map_err(candle_err("cannot merge".to_string()))?);
            }
        }
        Ok(out)
    }

    /// [`Self::merged_tensors`] quantized to `format`, ready for
    /// [`LlamaModel::load_with_overrides`].
    ///
    /// # Errors
    /// As [`Self::merged_tensors`].
    pub fn merged_qtensors(
        &self,
        base: &Path,
        format: MergeFormat,
    ) -> Result<HashMap<String, QTensor>> {
        self.merged_tensors(base)?
            .into_iter()
            .map(|(name, t)| {
                // Q8_0 needs whole blocks of 32 along a row; vectors (norms) stay f32.
                let dtype = if t.rank() == 2 && t.dims()[1] % 32 == 0 {
                    format.ggml()
                } else {
                    GgmlDType::F32
                };
                let q = QTensor::quantize(&t, dtype)
                    .map_err(candle_err(format!("cannot store `{name}`")))?;
                Ok((name, q))
            })
            .collect()
    }

    /// Checks that this adapter was trained on the model at `base`.
    ///
    /// # Errors
    /// The fingerprints differ.
    pub fn check_base(&self, base: &Path) -> Result<()> {
        let fingerprint = hub::fingerprint(base)?;
        if fingerprint != self.manifest.base_model.fingerprint {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the adapter was trained on {:?} (sha256 {}), but {} has sha256 {}; use the \
                     adapter with the model it was trained on",
                    self.manifest.base_model.name,
                    &self.manifest.base_model.fingerprint
                        [..12.min(self.manifest.base_model.fingerprint.len())],
                    base.display(),
                    &fingerprint[..12]
                ),
            ));
        }
        Ok(())
    }
}

fn shape_err(name: &str, base: &[usize], adapter: &[usize]) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("`{name}` is {base:?} in the base model but {adapter:?} in the adapter"),
    )
}

/// Loads the inference model at `gguf` with the adapter in `adapter_dir` merged in.
///
/// # Errors
/// An adapter of another base model, or unreadable files.
pub fn load_model_with_adapter(
    gguf: &Path,
    adapter_dir: &Path,
    format: MergeFormat,
) -> Result<(LanguageModel, AdapterManifest)> {
    load_model_with_adapter_and_precision(gguf, adapter_dir, format, Precision::default())
}

/// [`load_model_with_adapter`] with a choice of arithmetic.
///
/// # Errors
/// As [`load_model_with_adapter`].
pub fn load_model_with_adapter_and_precision(
    gguf: &Path,
    adapter_dir: &Path,
    format: MergeFormat,
    precision: Precision,
) -> Result<(LanguageModel, AdapterManifest)> {
    let adapter = load_adapter(adapter_dir)?;
    adapter.check_base(gguf)?;
    let overrides = adapter.merged_qtensors(gguf, format)?;
    let mut file = GgufFile::open(gguf)?;
    let model = LlamaModel::from_gguf(&mut file, precision, overrides)?;
    Ok((model.into(), adapter.manifest))
}

/// Writes a GGUF file equal to `base` with the adapter merged in; its metadata adds the base
/// model's fingerprint ([`BASE_FINGERPRINT_KEY`]) and the prompt style ([`PROMPT_STYLE_KEY`]).
///
/// # Errors
/// Unreadable inputs or an unwritable output.
pub fn write_merged_gguf(
    base: &Path,
    adapter_dir: &Path,
    out: &Path,
    format: MergeFormat,
) -> Result<PathBuf> {
    let adapter = load_adapter(adapter_dir)?;
    adapter.check_base(base)?;
    let mut merged = adapter.merged_qtensors(base, format)?;
    let mut file = std::fs::File::open(base).map_err(|e| io_err(base, "open", e))?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(candle_err(format!("{} is not a readable GGUF file", base.display())))?;
    let mut names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in &names {
        let t = match merged.remove(name) {
            Some(t) => t,
            None => content
                .tensor(&mut file, name, &Device::Cpu)
                .map_err(candle_err(format!("cannot read `{name}`")))?,
        };
        tensors.push((name.as_str(), t));
    }
    let base_fp = gguf_file::Value::String(adapter.manifest.base_model.fingerprint.clone());
    let style = gguf_file::Value::String(adapter.manifest.prompt_style.clone());
    let mut keys: Vec<&String> = content.metadata.keys().collect();
    keys.sort();
    // The writer aligns tensor data to 32 bytes, so an alignment key from the base must not
    // be copied.
    let mut metadata: Vec<(&str, &gguf_file::Value)> = keys
        .into_iter()
        .filter(|k| k.as_str() != "general.alignment" && !k.starts_with("seal."))
        .map(|k| (k.as_str(), &content.metadata[k]))
        .collect();
    metadata.push((BASE_FINGERPRINT_KEY, &base_fp));
    metadata.push((PROMPT_STYLE_KEY, &style));
    let tmp = out.with_extension("gguf.tmp");
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, "create", e))?,
    );
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    gguf_file::write(&mut w, &metadata, &refs)
        .map_err(candle_err(format!("cannot write {}", tmp.display())))?;
    use std::io::Write;
    w.flush().map_err(|e| io_err(&tmp, "write", e))?;
    drop(w);
    std::fs::rename(&tmp, out).map_err(|e| io_err(out, "write", e))?;
    Ok(out.to_path_buf())
}

/// The base model fingerprint recorded in a merged GGUF, if any.
pub fn base_fingerprint_of(gguf: &Path) -> Option<String> {
    let mut file = std::fs::File::open(gguf).ok()?;
    let content = gguf_file::Content::read(&mut file).ok()?;
    content.metadata.get(BASE_FINGERPRINT_KEY)?.to_string().ok().cloned()
}

/// The name of the prompt style recorded in a merged GGUF, if any.
pub fn prompt_style_of(gguf: &Path) -> Option<String> {
    let mut file = std::fs::File::open(gguf).ok()?;
    let content = gguf_file::Content::read(&mut file).ok()?;
    content.metadata.get(PROMPT_STYLE_KEY)?.to_string().ok().cloned()
}
