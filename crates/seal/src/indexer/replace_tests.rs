//! Tests of [`super`]: every state a target can be in, both ways of swapping, and the clean-up
//! and recovery of what dead builds leave. The kill -9 test of the real binary is in
//! `tests/integration/index.rs`.

use super::*;

/// A fresh parent directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seal-replace-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A directory that looks like a seal index whose `fm.idx` holds `content`.
fn fake_index(dir: &Path, content: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let manifest = r#"{"format_version": 1, "seal_version": "0", "model": {}, "tokenizer": {}}"#;
    std::fs::write(dir.join(MANIFEST_FILE), manifest).unwrap();
    std::fs::write(dir.join(FM_INDEX_FILE), content).unwrap();
    std::fs::write(dir.join(DOCS_FILE), content).unwrap();
}

/// Builds a fake index whose `fm.idx` holds `content` into `dir` the way `build_index` does.
fn rebuild(dir: &Path, content: &str, swap: Swap) -> Result<()> {
    let target = Target::prepare(dir)?;
    let mut staging = target.stage()?;
    fake_index(staging.path(), content);
    staging.commit_with(&target, swap)
}

fn read(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(FM_INDEX_FILE)).unwrap()
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The PID of a process that has exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_missing_or_empty_directory_receives_the_index_by_one_rename() {
    let parent = scratch("missing");
    let dir = parent.join("nested").join("idx");
    rebuild(&dir, "one", Swap::Exchange).unwrap();
    assert_eq!(read(&dir), "one");
    let empty = parent.join("empty");
    std::fs::create_dir(&empty).unwrap();
    rebuild(&empty, "two", Swap::Exchange).unwrap();
    assert_eq!(read(&empty), "two");
    assert_eq!(names(&parent), ["empty", "nested"]);
    std::fs::remove_dir_all(&parent).unwrap();
}

#[test]
fn a_full_index_is_swapped_whole_and_the_old_one_removed() {
    for swap in [Swap::Exchange, Swap::TwoRenames] {
        let parent = scratch(&format!("full-{swap:?}"));
        let dir = parent.join("idx");
        fake_index(&dir, "old");
        std::fs::write(dir.join(SKIPPED_LINES_FILE), "# old list").unwrap();
        // A reader with the old file open keeps reading it after the swap.
        let mut held = File::open(dir.join(FM_INDEX_FILE)).unwrap();
        rebuild(&dir, "new", swap).unwrap();
        assert_eq!(read(&dir), "new");
        assert_eq!(names(&dir), [DOCS_FILE, FM_INDEX_FILE, MANIFEST_FILE], "{swap:?}");
        assert_eq!(names(&parent), ["idx"], "{swap:?}: nothing left beside it");
        let mut old = String::new();
        std::io::Read::read_to_string(&mut held, &mut old).unwrap();
        assert_eq!(old, "old");
        std::fs::remove_dir_all(&parent).unwrap();
    }
}

#[test]
fn a_symlinked_target_is_replaced_behind_the_link() {
    let parent = scratch("symlink");
    let real = parent.join("real");
    fake_index(&real, "old");
    let link = parent.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    rebuild(&link, "new", Swap::Exchange).unwrap();
    assert!(link.is_symlink());
    assert_eq!(read(&link), "new");
    std::fs::remove_dir_all(&parent).unwrap();
}

#[test]
fn a_directory_that_is_not_a_seal_index_is_refused_untouched() {
    let parent = scratch("foreign");
    let dir = parent.join("docs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    std::fs::write(dir.join(FM_INDEX_FILE), "x").unwrap();
    let e = rebuild(&dir, "new", Swap::Exchange).unwrap_err().to_string();
    assert!(e.contains("is not a seal index: it holds notes.txt;"), "{e}");
    assert!(e.contains("choose an empty or new directory"), "{e}");

    std::fs::remove_file(dir.join("notes.txt")).unwrap();
    std::fs::write(dir.join(MANIFEST_FILE), r#"{"name": "my-app", "version": 3}"#).unwrap();
    let e = rebuild(&dir, "new", Swap::Exchange).unwrap_err().to_string();
    assert!(e.contains("is not a seal index manifest"), "{e}");
    assert_eq!(names(&dir), [FM_INDEX_FILE, MANIFEST_FILE]);
    assert_eq!(names(&parent), ["docs"], "no staging directory is left behind");

    let file = parent.join("file");
    std::fs::write(&file, "x").unwrap();
    let e = rebuild(&file, "new", Swap::Exchange).unwrap_err().to_string();
    assert!(e.contains("is a file, not a directory"), "{e}");
    std::fs::remove_dir_all(&parent).unwrap();
}

#[test]
fn what_a_killed_build_of_an_earlier_version_left_is_replaced() {
    // Earlier versions deleted the manifest first and wrote temporary files in place.
    let parent = scratch("legacy");
    let dir = parent.join("idx");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(DOCS_FILE), "old").unwrap();
    std::fs::write(dir.join(".fm.idx.tmp-4242"), vec![0u8; 4096]).unwrap();
    std::fs::write(dir.join(".docs.bin.tmp4242"), "x").unwrap();
    rebuild(&dir, "new", Swap::Exchange).unwrap();
    assert_eq!(names(&dir), [DOCS_FILE, FM_INDEX_FILE, MANIFEST_FILE]);
    std::fs::remove_dir_all(&parent).unwrap();
}

#[test]
fn leftovers_of_dead_builds_go_and_a_running_build_is_left_alone() {
    let parent = scratch("leftovers");
    let dir = parent.join("idx");
    fake_index(&dir, "old");
    let dead = dead_pid();
    let staged = parent.join(format!(".idx.{NEW_TAG}{dead}-0"));
    fake_index(&staged, "half");
    let swapped_out = parent.join(format!(".idx.{OLD_TAG}{dead}-1"));
    fake_index(&swapped_out, "older");
    // Another build of this name, running (this process, lock held).
    let running = Target::prepare(&dir).unwrap().stage().unwrap();
    assert!(!staged.exists() && !swapped_out.exists(), "{:?}", names(&parent));
    assert!(running.path().exists());
    // The next build leaves it alone, too, and finishes; the running one is then dropped.
    rebuild(&dir, "new", Swap::Exchange).unwrap();
    assert!(running.path().exists());
    drop(running);
    assert_eq!(names(&parent), ["idx"]);
    std::fs::remove_dir_all(&parent).unwrap();
}

#[test]
fn a_replacement_killed_between_its_two_renames_is_rolled_back() {
    let parent = scratch("recover");
    let dir = parent.join("idx");
    fake_index(&dir, "old");
    // The fallback moved the old index aside and died before moving the new one in.
    let aside = parent.join(format!(".idx.{OLD_TAG}{}-0", dead_pid()));
    std::fs::rename(&dir, &aside).unwrap();
    fake_index(&parent.join(format!(".idx.{NEW_TAG}{}-0", dead_pid())), "new");
    let hint = interrupted_replacement_hint(&dir).unwrap();
    assert!(hint.contains(&aside.display().to_string()), "{hint}");
    assert!(recover(&dir).unwrap());
    assert_eq!(read(&dir), "old");
    assert!(!recover(&dir).unwrap(), "nothing left to recover");
    // Opening restores it, too (this fake manifest is no real one, hence the error).
    std::fs::rename(&dir, &aside).unwrap();
    let e = super::super::read_manifest(&dir).unwrap_err().to_string();
    assert!(e.contains("is corrupt"), "{e}");
    assert_eq!(read(&dir), "old");
    // The next build cleans the dead staging directory up.
    rebuild(&dir, "newer", Swap::TwoRenames).unwrap();
    assert_eq!(names(&parent), ["idx"]);
    assert_eq!(read(&dir), "newer");
    std::fs::remove_dir_all(&parent).unwrap();
}

#[test]
fn a_failed_build_removes_its_staging_directory_and_keeps_the_old_index() {
    let parent = scratch("failed");
    let dir = parent.join("idx");
    fake_index(&dir, "old");
    let target = Target::prepare(&dir).unwrap();
    let staging = target.stage().unwrap();
    std::fs::write(staging.path().join(FM_INDEX_FILE), "half").unwrap();
    drop(staging);
    assert_eq!(names(&parent), ["idx"]);
    assert_eq!(read(&dir), "old");
    std::fs::remove_dir_all(&parent).unwrap();
}

#[test]
fn index_files_and_their_temporary_files_are_recognised() {
    for name in
        [MANIFEST_FILE, FM_INDEX_FILE, ".fm.idx.tmp-12", ".docs.bin.tmp12", SKIPPED_LINES_FILE]
    {
        assert!(is_index_file(name), "{name}");
    }
    for name in ["notes.txt", "fm.idx.bak", ".fm.idx", ".git", "sub", "seal"] {
        assert!(!is_index_file(name), "{name}");
    }
}
