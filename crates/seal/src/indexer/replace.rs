//! Replacing an index directory atomically: a build writes into a staging directory beside the
//! target and swaps it in with renames only when it is complete.
//!
//! Useful for: [`super::build_index`], which goes through [`Target::prepare`], [`Target::stage`]
//! and [`Staging::commit`]. Not for: what the files hold (that is [`super::manifest`]).
//!
//! # The invariant
//!
//! At every instant the target path `DIR` is the complete old index or the complete new one
//! (or absent, until a first build finishes): never a mixture, never neither. A build killed at
//! any moment leaves the old index answering; its leftovers are removed by the next build.
//!
//! # How
//!
//! 1. [`Target::prepare`] resolves `DIR` (a symlink to its target) and accepts it only when it is
//!    missing, empty, or holds nothing but the files of a seal index, so that `--out` never
//!    swallows an unrelated directory. It then finishes an interrupted replacement (below) and
//!    removes the staging directories of builds that died.
//! 2. [`Target::stage`] creates `.NAME.seal-new-PID-N` beside `DIR` and locks it (`flock` on the
//!    directory) for as long as the build runs: the lock and the PID tell the next build whether
//!    its owner is alive. The build writes every file into it, the manifest last.
//! 3. [`Staging::commit`] syncs it and swaps it in. When `DIR` is missing or empty: one rename.
//!    Otherwise one atomic exchange of the two directories (Linux `renameat2(RENAME_EXCHANGE)`,
//!    macOS `renamex_np(RENAME_SWAP)`): `DIR` is the new index and the staging name holds the
//!    old one, which is then removed. Where the filesystem cannot exchange, two renames, `DIR` →
//!    `.NAME.seal-old-PID-N` and staging → `DIR`: a crash between them leaves no `DIR` but a
//!    complete old index beside it, which the next build, or the next open
//!    ([`super::read_manifest`]), renames back ([`recover`]).
//!
//! Readers need nothing: an index that is open keeps working after a swap (`fm.idx` is
//! memory-mapped and `docs.bin` read into memory, and on Unix an unlinked file stays valid while
//! it is mapped), and [`super::IndexFiles::open`] opens again when a swap happens mid-way.

use super::{DOCS_FILE, FM_INDEX_FILE, MANIFEST_FILE, SKIPPED_LINES_FILE};
use crate::{Error, ErrorKind, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The files a seal index directory may hold: what a build writes; the temporary files of a
/// build of an earlier version killed before this scheme (`.fm.idx.tmp-PID`, ...); and
/// companions other seal commands keep in it, named `seal-*` (`seal eval`'s corpus stamp),
/// which describe the old index and go with it.
const INDEX_FILES: [&str; 4] = [MANIFEST_FILE, FM_INDEX_FILE, DOCS_FILE, SKIPPED_LINES_FILE];
/// The prefix of a companion file's name.
const COMPANION_PREFIX: &str = "seal-";

/// A staging directory that is not locked is still its owner's for this long after its last
/// change: the owner locks it right after creating it, and a PID may be reused.
const UNLOCKED_GRACE: Duration = Duration::from_secs(60);

/// Where an index goes, checked and cleaned up: what [`Target::prepare`] returns.
#[derive(Debug)]
pub struct Target {
    /// The index directory, symlinks resolved.
    dir: PathBuf,
    /// Its parent, where the staging directory goes.
    parent: PathBuf,
    /// Its file name, which names the staging directories.
    name: String,
}

/// A directory being built beside the target; removed on drop unless committed.
#[derive(Debug)]
pub struct Staging {
    path: PathBuf,
    /// This process's number for it (`N` in its name).
    serial: u64,
    /// The open directory holding the lock that says its build is alive.
    lock: Option<File>,
    committed: bool,
}

impl Target {
    /// Checks that `dir` may receive an index, finishes an interrupted replacement of it, and
    /// removes what dead builds left beside it.
    ///
    /// # Errors
    /// A `dir` that is a file, or a non-empty directory that is not a seal index (it names the
    /// files that are in the way), or a parent that cannot be created.
    pub fn prepare(dir: &Path) -> Result<Target> {
        let target = Target::resolve(dir)?;
        recover(&target.dir)?;
        target.check_contents()?;
        target.remove_dead_leftovers();
        Ok(target)
    }

    fn resolve(dir: &Path) -> Result<Target> {
        let io = |what: &str, path: &Path, e: std::io::Error| {
            Error::new(ErrorKind::Io, format!("cannot {what} {}", path.display())).with_source(e)
        };
        let dir = if dir.exists() {
            std::fs::canonicalize(dir).map_err(|e| io("resolve", dir, e))?
        } else {
            let parent =
                dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
            let parent = std::fs::canonicalize(parent).map_err(|e| io("resolve", parent, e))?;
            match dir.file_name() {
                Some(name) => parent.join(name),
                None => parent,
            }
        };
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{} cannot hold an index: choose a directory below it", dir.display()),
            ));
        };
        Ok(Target {
            parent: parent.to_owned(),
            name: name.to_string_lossy().into_owned(),
            dir: dir.clone(),
        })
    }

    /// Accepts a missing or empty directory and one that holds only a seal index's files.
    fn check_contents(&self) -> Result<()> {
        let dir = &self.dir;
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if dir.exists() && !dir.is_dir() => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{} is a file, not a directory; choose a directory for the index",
                        dir.display()
                    ),
                ))
            }
            Err(e) => {
                return Err(Error::new(ErrorKind::Io, format!("cannot list {}", dir.display()))
                    .with_source(e))
            }
        };
        let mut foreign: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !is_index_file(name))
            .collect();
        if !foreign.is_empty() {
            foreign.sort();
            let more = foreign.len().saturating_sub(5);
            foreign.truncate(5);
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} is not a seal index: it holds {}{}; an index build replaces the whole \
                     directory, so choose an empty or new directory, or move those files away",
                    dir.display(),
                    foreign.join(", "),
                    if more > 0 { format!(" and {more} more") } else { String::new() }
                ),
            ));
        }
        let manifest = dir.join(MANIFEST_FILE);
        if manifest.exists() && !is_seal_manifest(&manifest) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} is not a seal index manifest, so {} is not a seal index; choose an \
                     empty or new directory for the index",
                    manifest.display(),
                    dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// Removes the staging and set-aside directories of builds that are no longer running.
    fn remove_dead_leftovers(&self) {
        for (path, _) in leftovers(&self.parent, &self.name) {
            if !owner_alive(&path) {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }

    /// Creates and locks a staging directory beside the target.
    ///
    /// # Errors
    /// When it cannot be created: the target's parent must be writable.
    pub fn stage(&self) -> Result<Staging> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = self.parent.join(format!(".{}.{NEW_TAG}{}-{n}", self.name, std::process::id()));
        std::fs::create_dir(&path).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!(
                    "cannot create {}: an index is built beside its directory and swapped in \
                     when complete, so {} must be writable",
                    path.display(),
                    self.parent.display()
                ),
            )
            .with_source(e)
        })?;
        // Without the lock (a filesystem without flock) the PID and the grace period still
        // protect a running build from the next one's clean-up.
        let lock = File::open(&path).ok().filter(|f| f.try_lock().is_ok());
        Ok(Staging { path, serial: n, lock, committed: false })
    }

    /// The index directory (symlinks resolved).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Staging {
    /// Where the build writes its files.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Swaps the complete staging directory in as the target (see the module docs).
    ///
    /// # Errors
    /// When no rename can put it in place; the old index is then still in place.
    pub fn commit(mut self, target: &Target) -> Result<()> {
        self.commit_with(target, Swap::Exchange)
    }

    fn commit_with(&mut self, target: &Target, swap: Swap) -> Result<()> {
        sync_dir(&self.path);
        let dir = &target.dir;
        let io = |what: String, e: std::io::Error| {
            Error::new(ErrorKind::Io, format!("{what}; the previous index is unchanged"))
                .with_source(e)
        };
        let is_empty_or_missing = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
        // rename(2) replaces a missing or empty directory atomically, and fails on a full one.
        if is_empty_or_missing && std::fs::rename(&self.path, dir).is_ok() {
            self.committed = true;
            sync_dir(&target.parent);
            return Ok(());
        }
        let exchanged = match swap {
            Swap::Exchange => exchange(&self.path, dir),
            Swap::TwoRenames => Err(std::io::ErrorKind::Unsupported.into()),
        };
        match exchanged {
            Ok(()) => {
                // The staging name now holds the old index.
                self.committed = true;
                sync_dir(&target.parent);
                let _ = std::fs::remove_dir_all(&self.path);
                Ok(())
            }
            Err(e) if exchange_unsupported(&e) => {
                let aside = target.parent.join(format!(
                    ".{}.{OLD_TAG}{}-{}",
                    target.name,
                    std::process::id(),
                    self.serial
                ));
                // Locked while set aside, so that no recovery moves it back under us.
                let _old_lock = File::open(dir).ok().filter(|f| f.try_lock().is_ok());
                std::fs::rename(dir, &aside)
                    .map_err(|e| io(format!("cannot move {} aside", dir.display()), e))?;
                if let Err(e) = std::fs::rename(&self.path, dir) {
                    let _ = std::fs::rename(&aside, dir);
                    return Err(io(format!("cannot move the new index to {}", dir.display()), e));
                }
                self.committed = true;
                sync_dir(&target.parent);
                let _ = std::fs::remove_dir_all(&aside);
                Ok(())
            }
            Err(e) => Err(io(
                format!("cannot swap the new index {} into {}", self.path.display(), dir.display()),
                e,
            )),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
        self.lock.take();
    }
}

/// How [`Staging::commit`] swaps a full directory (tests force the fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swap {
    /// One atomic exchange where the platform has it, else two renames.
    Exchange,
    /// Two renames and a recoverable gap between them.
    #[cfg_attr(not(test), allow(dead_code))]
    TwoRenames,
}

const NEW_TAG: &str = "seal-new-";
const OLD_TAG: &str = "seal-old-";

/// Finishes a replacement interrupted between its two renames (a platform without exchange):
/// when `dir` is missing and a complete old index was set aside by a build that died, it is
/// renamed back. Returns whether it did.
///
/// # Errors
/// When the rename back fails (the error names where the old index is).
pub fn recover(dir: &Path) -> Result<bool> {
    if dir.exists() {
        return Ok(false);
    }
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Ok(false);
    };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let name = name.to_string_lossy();
    for (path, tag) in leftovers(parent, &name) {
        if tag == OLD_TAG && path.join(MANIFEST_FILE).is_file() && !owner_alive(&path) {
            std::fs::rename(&path, dir).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!(
                        "an interrupted rebuild left the previous index at {}; rename it to {}",
                        path.display(),
                        dir.display()
                    ),
                )
                .with_source(e)
            })?;
            sync_dir(parent);
            return Ok(true);
        }
    }
    Ok(false)
}

/// `"; ..."` naming a set-aside old index of `dir`, when there is one (for error messages).
pub(crate) fn interrupted_replacement_hint(dir: &Path) -> Option<String> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let (path, _) = leftovers(parent, &name).into_iter().find(|(_, tag)| *tag == OLD_TAG)?;
    Some(format!(
        "; an interrupted rebuild left the previous index at {} (opening restores it when it \
         may write there; else rename it back)",
        path.display()
    ))
}

/// The staging (`seal-new-`) and set-aside (`seal-old-`) directories of `name` in `parent`.
fn leftovers(parent: &Path, name: &str) -> Vec<(PathBuf, &'static str)> {
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    let prefix = format!(".{name}.");
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file_name = e.file_name().to_string_lossy().into_owned();
            let rest = file_name.strip_prefix(&prefix)?;
            let tag = [NEW_TAG, OLD_TAG].into_iter().find(|t| rest.starts_with(t))?;
            Some((e.path(), tag))
        })
        .collect()
}

/// Whether the build that owns a staging or set-aside directory may still be running: it holds
/// the directory's lock, or (a lock being taken just after creation) its PID is running and
/// the directory changed recently.
fn owner_alive(path: &Path) -> bool {
    let Ok(dir) = File::open(path) else { return true };
    if dir.try_lock().is_err() {
        return true;
    }
    drop(dir);
    let pid = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .and_then(|n| n.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok()));
    let recent = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_none_or(|age| age < UNLOCKED_GRACE);
    pid.is_some_and(process_running) && recent
}

#[cfg(unix)]
fn process_running(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_running(_pid: u32) -> bool {
    true
}

/// Whether `name`, an entry of an index directory, is a file seal writes there.
fn is_index_file(name: &str) -> bool {
    INDEX_FILES.contains(&name)
        || name.starts_with(COMPANION_PREFIX)
        || INDEX_FILES.iter().any(|f| {
            name.strip_prefix('.')
                .and_then(|n| n.strip_prefix(f))
                .is_some_and(|r| r.starts_with(".tmp"))
        })
}

/// Whether a `manifest.json` is a seal index's, of any version: a JSON object with seal's keys.
fn is_seal_manifest(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    let Ok(serde_json::Value::Object(m)) = serde_json::from_str(&text) else { return false };
    ["format_version", "seal_version", "model", "tokenizer"].iter().all(|k| m.contains_key(*k))
}

/// Makes a directory's entries durable (best effort: not every platform syncs directories).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn exchange_unsupported(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::ENOTSUP)) {
        return true;
    }
    e.kind() == std::io::ErrorKind::Unsupported
}

/// Atomically exchanges two paths.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let b = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: two NUL-terminated paths that outlive the call. The raw system call, not glibc's
    // wrapper, which older C libraries lack.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Atomically exchanges two paths.
#[cfg(target_os = "macos")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let b = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: two NUL-terminated paths that outlive the call.
    let rc = unsafe { libc::renamex_np(a.as_ptr(), b.as_ptr(), libc::RENAME_SWAP) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// No atomic exchange here: [`Staging::commit`] falls back to two renames.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
#[path = "replace_tests.rs"]
mod tests;
