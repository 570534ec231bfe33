//! The document store: each passage's external id, title and text, by [`DocId`], so results can
//! show what matched. Not for: search (the FM-index holds the token ids; this holds the strings).
//!
//! # Format (version 1), little-endian
//!
//! ```text
//! magic "SEALDOCS" | version u32 | reserved u32 | num_docs u64
//! offsets: (3 × num_docs + 1) × u64, strictly into the string area, non-decreasing
//! strings: for each document its id, title and text, UTF-8, concatenated
//! crc32 of every byte before it: u32
//! ```
//!
//! Validated on open: a truncated, corrupt or foreign file is an error, never a panic.

use crate::{DocId, Error, ErrorKind, Result};
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8; 8] = b"SEALDOCS";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 24;

/// Passages by [`DocId`], loaded in memory.
#[derive(Debug, Clone, Default)]
pub struct DocStore {
    offsets: Vec<u64>,
    strings: String,
}

/// One stored passage, borrowed from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredDoc<'a> {
    /// The corpus's own id of the passage.
    pub id: &'a str,
    /// The passage title (may be empty).
    pub title: &'a str,
    /// The passage text.
    pub text: &'a str,
}

impl DocStore {
    /// An empty store to [`push`](Self::push) passages into.
    pub fn new() -> Self {
        DocStore { offsets: vec![0], strings: String::new() }
    }

    /// Appends a passage; returns its [`DocId`].
    pub fn push(&mut self, id: &str, title: &str, text: &str) -> DocId {
        let doc = self.len() as DocId;
        for s in [id, title, text] {
            self.strings.push_str(s);
            self.offsets.push(self.strings.len() as u64);
        }
        doc
    }

    /// Number of passages.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1) / 3
    }

    /// Whether the store holds no passage.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The passage `doc`, or `None` when out of range.
    pub fn get(&self, doc: DocId) -> Option<StoredDoc<'_>> {
        let i = doc as usize;
        if i >= self.len() {
            return None;
        }
        let field = |k: usize| {
            let (a, b) = (self.offsets[3 * i + k] as usize, self.offsets[3 * i + k + 1] as usize);
            &self.strings[a..b]
        };
        Some(StoredDoc { id: field(0), title: field(1), text: field(2) })
    }

    /// Writes the store to `path` through a temporary file renamed into place.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut bytes =
            Vec::with_capacity(HEADER_LEN + self.offsets.len() * 8 + self.strings.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&(self.len() as u64).to_le_bytes());
        for o in &self.offsets {
            bytes.extend_from_slice(&o.to_le_bytes());
        }
        bytes.extend_from_slice(self.strings.as_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        write_atomically(path, &bytes)
    }

    /// Reads and validates a store written by [`write`](Self::write).
    ///
    /// # Errors
    /// When the file cannot be read or is not a valid document store.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::new(ErrorKind::Io, format!("cannot read document store {}", path.display()))
                .with_source(e)
        })?;
        Self::from_bytes(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Index,
                format!(
                    "{} is not a valid seal document store ({e}); rebuild the index with `seal index`",
                    path.display()
                ),
            )
        })
    }

    /// Parses and validates store bytes.
    ///
    /// # Errors
    /// A message naming the first problem found.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.len() < HEADER_LEN + 8 + 4 {
            return Err(format!("file too short ({} bytes)", bytes.len()));
        }
        if &bytes[..8] != MAGIC {
            return Err("wrong magic bytes".into());
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        if version != VERSION {
            return Err(format!("format version {version}, expected {VERSION}"));
        }
        let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
        let crc = u32::from_le_bytes(crc_bytes.try_into().unwrap());
        if crc32fast::hash(body) != crc {
            return Err("checksum mismatch (the file is corrupt or truncated)".into());
        }
        let num_docs = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
        let num_offsets = num_docs
            .checked_mul(3)
            .and_then(|n| n.checked_add(1))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or("document count overflows")?;
        let offsets_end = num_offsets
            .checked_mul(8)
            .and_then(|n| n.checked_add(HEADER_LEN))
            .filter(|&end| end <= body.len())
            .ok_or("offset table runs past the end of the file")?;
        let offsets: Vec<u64> = body[HEADER_LEN..offsets_end]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let strings = std::str::from_utf8(&body[offsets_end..])
            .map_err(|_| "passage text is not UTF-8")?
            .to_owned();
        if offsets[0] != 0 || *offsets.last().unwrap() as usize != strings.len() {
            return Err("offset table does not cover the string area".into());
        }
        for w in offsets.windows(2) {
            if w[0] > w[1] || !strings.is_char_boundary(w[1] as usize) {
                return Err("offset table is not ordered on character boundaries".into());
            }
        }
        Ok(DocStore { offsets, strings })
    }
}

/// Writes `bytes` to `path` via a temporary file in the same folder, then renames it into
/// place, so a crash never leaves a half-written file under the final name.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let io = |e: std::io::Error| {
        Error::new(ErrorKind::Io, format!("cannot write {}", path.display())).with_source(e)
    };
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> DocStore {
        let mut s = DocStore::new();
        s.push("d1", "Title one", "Some text — with ünïcode");
        s.push("d2", "", "");
        s.push("d3", "Third", "x");
        s
    }

    #[test]
    fn round_trip_through_a_file() {
        let dir = std::env::temp_dir().join(format!("seal-docstore-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("docs.bin");
        sample().write(&path).unwrap();
        let s = DocStore::open(&path).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.get(0),
            Some(StoredDoc { id: "d1", title: "Title one", text: "Some text — with ünïcode" })
        );
        assert_eq!(s.get(1), Some(StoredDoc { id: "d2", title: "", text: "" }));
        assert_eq!(s.get(2).unwrap().text, "x");
        assert_eq!(s.get(3), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("seal-docstore-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("docs.bin");
        sample().write(&path).unwrap();
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[30] ^= 1;
        assert!(DocStore::from_bytes(&flipped).unwrap_err().contains("checksum"));
        assert!(DocStore::from_bytes(&good[..good.len() - 1]).is_err());
        assert!(DocStore::from_bytes(b"not a store at all, clearly").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = DocStore::from_bytes(&bytes);
        }

        /// Mutations with a recomputed checksum reach the structural checks behind it.
        #[test]
        fn mutated_files_with_valid_checksum_never_panic(pos in 0usize..400, val in any::<u8>()) {
            let path = std::env::temp_dir().join(format!("seal-docstore-m-{}-{pos}-{val}", std::process::id()));
            sample().write(&path).unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            let body_len = bytes.len() - 4;
            bytes[pos % body_len] = val;
            let crc = crc32fast::hash(&bytes[..body_len]);
            bytes[body_len..].copy_from_slice(&crc.to_le_bytes());
            if let Ok(store) = DocStore::from_bytes(&bytes) {
                for d in 0..store.len() as DocId {
                    let _ = store.get(d);
                }
            }
        }
    }
}
