//! The code store: uploaded zips, validated, content-addressed and unpacked once per digest.
//!
//! Owns `<data-dir>/code/`: `<sha256-hex>.zip` (the upload as received) and
//! `<sha256-hex>/` (its unpacked tree, the function's task root). Validation happens
//! before anything is written: a corrupt zip, an entry that would land outside the
//! tree (`..`, absolute paths, escaping symlinks) or an unpacked size over Lambda's
//! 250 MB quota is refused with a [`CodeError`]. Writes go to a temporary name and are
//! renamed into place, so a crash never leaves a half-written package under a digest.

use std::fs;
use std::io::{self, Cursor, Read, Write};
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::function::CodeRef;

/// Lambda's quota for the unzipped size of a deployment package.
pub const UNZIPPED_MAX_BYTES: u64 = 262_144_000;

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error(
        "Could not unzip uploaded file. Please check your file, then try to upload again. ({0})"
    )]
    Corrupt(String),
    #[error("Zip entry '{0}' is not allowed: entries must stay inside the function's directory")]
    EscapingEntry(String),
    #[error("Unzipped size must be smaller than {UNZIPPED_MAX_BYTES} bytes")]
    TooLarge,
    #[error("code store I/O failed: {0}")]
    Io(#[from] io::Error),
}

impl CodeError {
    /// True when the upload itself is at fault (a 400), false for a server-side failure.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Self::Io(_))
    }
}

#[derive(Debug, Clone)]
pub struct CodeStore {
    root: PathBuf,
}

impl CodeStore {
    pub fn open(root: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    /// The unpacked tree of a digest: the task root of every function that uses it.
    pub fn task_root(&self, sha256_hex: &str) -> PathBuf {
        self.root.join(sha256_hex)
    }

    pub fn zip_path(&self, sha256_hex: &str) -> PathBuf {
        self.root.join(format!("{sha256_hex}.zip"))
    }

    /// Validates, stores and unpacks a zip; a digest already stored is not written again.
    pub fn put(&self, zip_bytes: &[u8]) -> Result<CodeRef, CodeError> {
        let digest = Sha256::digest(zip_bytes);
        let code = CodeRef {
            sha256_hex: hex(&digest),
            sha256_b64: base64::engine::general_purpose::STANDARD.encode(digest),
            size: zip_bytes.len() as u64,
        };
        let tree = self.task_root(&code.sha256_hex);
        if tree.is_dir() && self.zip_path(&code.sha256_hex).is_file() {
            return Ok(code);
        }
        let staging = self
            .root
            .join(format!(".staging-{}", uuid::Uuid::new_v4().simple()));
        let result = unpack(zip_bytes, &staging).and_then(|()| {
            write_atomically(&self.zip_path(&code.sha256_hex), zip_bytes)?;
            match fs::rename(&staging, &tree) {
                Ok(()) => Ok(()),
                // Another upload of the same digest won the race: its tree is identical.
                Err(_) if tree.is_dir() => Ok(()),
                Err(e) => Err(CodeError::Io(e)),
            }
        });
        if staging.exists() {
            let _ = fs::remove_dir_all(&staging);
        }
        result.map(|()| code)
    }

    /// Removes the blobs of digests no function uses any more.
    pub fn remove_unreferenced(
        &self,
        in_use: &std::collections::HashSet<String>,
    ) -> io::Result<()> {
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            let digest = name.trim_end_matches(".zip");
            if digest.len() == 64 && !in_use.contains(digest) {
                let path = entry.path();
                if path.is_dir() {
                    fs::remove_dir_all(path)?;
                } else {
                    fs::remove_file(path)?;
                }
            } else if name.starts_with(".staging-") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// A path inside the package, or an error naming the entry that tries to leave it.
fn safe_relative_path(raw: &str) -> Result<PathBuf, CodeError> {
    let path = Path::new(raw);
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(CodeError::EscapingEntry(raw.to_string()));
            }
        }
    }
    if raw.contains('\\') && raw.split('\\').any(|p| p == "..") {
        return Err(CodeError::EscapingEntry(raw.to_string()));
    }
    Ok(clean)
}

/// True when a symlink at `entry` pointing to `target` resolves inside the package.
fn symlink_stays_inside(entry: &Path, target: &str) -> bool {
    if Path::new(target).is_absolute() {
        return false;
    }
    let mut depth: i64 = entry.components().count() as i64 - 1;
    for component in Path::new(target).components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

fn corrupt(e: impl std::fmt::Display) -> CodeError {
    CodeError::Corrupt(e.to_string())
}

/// Checks every entry, then extracts into `dest` with the sizes actually read bounded.
fn unpack(zip_bytes: &[u8], dest: &Path) -> Result<(), CodeError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip_bytes)).map_err(corrupt)?;
    let mut declared: u64 = 0;
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(corrupt)?;
        safe_relative_path(entry.name())?;
        declared = declared.saturating_add(entry.size());
    }
    if declared > UNZIPPED_MAX_BYTES {
        return Err(CodeError::TooLarge);
    }
    fs::create_dir_all(dest)?;
    let mut budget = UNZIPPED_MAX_BYTES;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(corrupt)?;
        let relative = safe_relative_path(entry.name())?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let out_path = dest.join(&relative);
        let mode = entry.unix_mode();
        if entry.is_dir() {
            fs::create_dir_all(&out_path)?;
            continue;
        }
        if let Some(parent) = out_path.parent() {
            fs::create_dir_all(parent)?;
        }
        let is_symlink = mode.is_some_and(|m| m & 0o170000 == 0o120000);
        if is_symlink {
            let mut target = String::new();
            entry
                .by_ref()
                .take(4096)
                .read_to_string(&mut target)
                .map_err(corrupt)?;
            if !symlink_stays_inside(&relative, &target) {
                return Err(CodeError::EscapingEntry(format!(
                    "{} -> {target}",
                    entry.name()
                )));
            }
            std::os::unix::fs::symlink(&target, &out_path)?;
            continue;
        }
        let mut file = fs::File::create(&out_path)?;
        let written = io::copy(&mut entry.by_ref().take(budget + 1), &mut file).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                corrupt(e)
            } else {
                CodeError::Io(e)
            }
        })?;
        if written > budget {
            return Err(CodeError::TooLarge);
        }
        budget -= written;
        // Keep the owner's execute bit (a `bootstrap` must stay executable); drop set-id bits.
        let permissions = match mode {
            Some(m) if m & 0o111 != 0 => 0o755,
            _ => 0o644,
        };
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&out_path, fs::Permissions::from_mode(permissions))?;
    }
    Ok(())
}

/// Zips a folder (for the CLI's `deploy`), keeping each file's permission bits.
pub fn zip_directory(dir: &Path) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let mut stack = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current)? {
            let entry = entry?;
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                stack.push(entry.path());
            } else if file_type.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    for path in files {
        let relative = path
            .strip_prefix(dir)
            .map_err(io::Error::other)?
            .to_string_lossy()
            .replace('\\', "/");
        let mode = fs::metadata(&path)?.permissions().mode() & 0o777;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode);
        writer
            .start_file(relative, options)
            .map_err(io::Error::other)?;
        writer.write_all(&fs::read(&path)?)?;
    }
    let cursor = writer.finish().map_err(io::Error::other)?;
    Ok(cursor.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_of(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data, mode) in entries {
            let options = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
            writer.start_file(*name, options).unwrap();
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn stores_once_per_digest_and_keeps_exec_bits() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path().join("code")).unwrap();
        let zip = zip_of(&[
            ("bootstrap", b"#!/bin/sh\n", 0o755),
            ("lib/a.txt", b"a", 0o644),
        ]);
        let first = store.put(&zip).unwrap();
        let second = store.put(&zip).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.size, zip.len() as u64);
        let root = store.task_root(&first.sha256_hex);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(root.join("bootstrap"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(fs::read(root.join("lib/a.txt")).unwrap(), b"a");
        let entries = fs::read_dir(dir.path().join("code")).unwrap().count();
        assert_eq!(entries, 2, "one zip and one tree");
    }

    #[test]
    fn refuses_escaping_and_corrupt_packages() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path().join("code")).unwrap();
        let parent = zip_of(&[("../evil", b"x", 0o644)]);
        assert!(matches!(
            store.put(&parent),
            Err(CodeError::EscapingEntry(_))
        ));
        let absolute = zip_of(&[("/etc/evil", b"x", 0o644)]);
        assert!(matches!(
            store.put(&absolute),
            Err(CodeError::EscapingEntry(_))
        ));
        assert!(matches!(
            store.put(b"not a zip"),
            Err(CodeError::Corrupt(_))
        ));
        assert!(!dir.path().join("evil").exists());
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("code")).unwrap().collect();
        assert!(leftovers.is_empty(), "nothing written for a refused upload");
    }

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(symlink_stays_inside(Path::new("a/b"), "c"));
        assert!(symlink_stays_inside(Path::new("a/b"), "../c"));
        assert!(!symlink_stays_inside(Path::new("a/b"), "../../c"));
        assert!(!symlink_stays_inside(Path::new("b"), "/etc/passwd"));
    }

    #[test]
    fn zips_a_directory_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("app.py"), "x = 1\n").unwrap();
        fs::create_dir(dir.path().join("pkg")).unwrap();
        fs::write(dir.path().join("pkg/m.py"), "y = 2\n").unwrap();
        let zip = zip_directory(dir.path()).unwrap();
        let store = CodeStore::open(dir.path().join("store")).unwrap();
        // The store folder itself is created after zipping, so it is not in the package.
        let code = store.put(&zip).unwrap();
        let root = store.task_root(&code.sha256_hex);
        assert_eq!(
            fs::read_to_string(root.join("pkg/m.py")).unwrap(),
            "y = 2\n"
        );
    }
}
