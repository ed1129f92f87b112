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
/// What an unpacked package may take on disk, counting each entry as the blocks it really
/// takes (a file rounded up to [`BLOCK_BYTES`], a folder or link one block), so that a
/// package of many tiny entries cannot take far more disk and inodes than its size says.
pub const FOOTPRINT_MAX_BYTES: u64 = 320 * 1024 * 1024;
const BLOCK_BYTES: u64 = 4096;
/// The longest name of one path component (Linux's `NAME_MAX`).
const NAME_MAX_BYTES: usize = 255;
/// The longest path of an entry inside the package.
const PATH_MAX_BYTES: usize = 1024;
/// Links followed while resolving one link's target (Linux's own limit).
const SYMLINK_HOPS_MAX: u32 = 40;

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error(
        "Could not unzip uploaded file. Please check your file, then try to upload again. ({0})"
    )]
    Corrupt(String),
    #[error("Zip entry '{0}' is not allowed: entries must stay inside the function's directory")]
    EscapingEntry(String),
    #[error("Zip entry '{entry}' is not allowed: {reason}")]
    InvalidEntry { entry: String, reason: &'static str },
    #[error(
        "Unzipped size must be smaller than {UNZIPPED_MAX_BYTES} bytes, and the unzipped \
         files and folders must take less than {FOOTPRINT_MAX_BYTES} bytes on disk"
    )]
    TooLarge,
    #[error("code store I/O failed: {0}")]
    Io(#[from] io::Error),
}

impl CodeError {
    /// True when the upload itself is at fault (a 400), false for a server-side failure.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Self::Io(_))
    }

    fn invalid(entry: &str, reason: &'static str) -> Self {
        Self::InvalidEntry {
            entry: entry.chars().take(300).collect(),
            reason,
        }
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

    /// One folder holding the unpacked trees of `digests` (layers, in order: a later one's
    /// file wins over an earlier one's at the same path), made once per list and reused;
    /// files are hard links to the trees (copies where linking fails). Its name is a digest
    /// of the list, which no function names: it goes at the next start, like code no one
    /// uses, and is made again when needed.
    pub fn merged_tree(&self, digests: &[String]) -> io::Result<PathBuf> {
        let key = hex(&Sha256::digest(digests.join(",").as_bytes()));
        let merged = self.root.join(&key);
        if merged.is_dir() {
            return Ok(merged);
        }
        let staging = self
            .root
            .join(format!(".staging-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(&staging)?;
        let built = digests
            .iter()
            .try_for_each(|d| merge_into(&self.task_root(d), &staging));
        let result = built.and_then(|()| match fs::rename(&staging, &merged) {
            Ok(()) => Ok(()),
            Err(_) if merged.is_dir() => Ok(()),
            Err(e) => Err(e),
        });
        if staging.exists() {
            let _ = fs::remove_dir_all(&staging);
        }
        result.map(|()| merged)
    }

    /// The unzipped size a stored package declares (its entries' sizes, as checked
    /// against [`UNZIPPED_MAX_BYTES`] when it was stored).
    pub fn unzipped_size(&self, sha256_hex: &str) -> Result<u64, CodeError> {
        let file = fs::File::open(self.zip_path(sha256_hex))?;
        declared_size(zip::ZipArchive::new(io::BufReader::new(file)).map_err(corrupt)?)
    }

    /// How many packages (zips or unpacked trees, by digest) the store holds.
    pub fn package_count(&self) -> io::Result<usize> {
        let mut digests = std::collections::HashSet::new();
        for entry in fs::read_dir(&self.root)? {
            let name = entry?.file_name().to_string_lossy().to_string();
            let digest = name.trim_end_matches(".zip");
            if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                digests.insert(digest.to_string());
            }
        }
        Ok(digests.len())
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

/// Copies the tree at `from` into `into` (folders made, files hard-linked or copied,
/// links recreated), replacing what is there.
fn merge_into(from: &Path, into: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = into.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if target.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                fs::remove_file(&target)?;
            }
            fs::create_dir_all(&target)?;
            merge_into(&entry.path(), &target)?;
            continue;
        }
        match target.symlink_metadata() {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&target)?,
            Ok(_) => fs::remove_file(&target)?,
            Err(_) => {}
        }
        if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)?;
        } else if fs::hard_link(entry.path(), &target).is_err() {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
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

/// A path inside the package, or an error naming the entry that tries to leave it or
/// that no filesystem could hold.
fn safe_relative_path(raw: &str) -> Result<PathBuf, CodeError> {
    if raw.len() > PATH_MAX_BYTES {
        return Err(CodeError::invalid(
            raw,
            "the path is longer than 1024 bytes",
        ));
    }
    if raw.contains('\0') {
        return Err(CodeError::invalid(raw, "the path contains a NUL byte"));
    }
    let path = Path::new(raw);
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                if part.len() > NAME_MAX_BYTES {
                    return Err(CodeError::invalid(
                        raw,
                        "a file or folder name is longer than 255 bytes",
                    ));
                }
                clean.push(part)
            }
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

/// What storing a package takes on disk: the zip itself and the footprint its entries
/// declare once unpacked (bounded by [`FOOTPRINT_MAX_BYTES`]); a zip that cannot be read
/// counts as its own size (storing it fails before anything is written).
pub fn stored_bytes(zip_bytes: &[u8]) -> u64 {
    let unpacked = zip::ZipArchive::new(Cursor::new(zip_bytes))
        .map(|mut archive| {
            (0..archive.len())
                .filter_map(|i| archive.by_index_raw(i).ok().map(|e| footprint(e.size())))
                .fold(0u64, u64::saturating_add)
        })
        .unwrap_or(0);
    (zip_bytes.len() as u64).saturating_add(unpacked.min(FOOTPRINT_MAX_BYTES))
}

fn corrupt(e: impl std::fmt::Display) -> CodeError {
    CodeError::Corrupt(e.to_string())
}

/// The disk an entry takes: its data rounded up to whole blocks, at least one block.
fn footprint(size: u64) -> u64 {
    size.div_ceil(BLOCK_BYTES)
        .max(1)
        .saturating_mul(BLOCK_BYTES)
}

/// Checks every entry, then extracts into `dest` with the sizes actually read bounded.
///
/// Extraction never follows a link: every folder on an entry's way is checked to be a
/// real folder (made here, or found as one), and files are opened with `O_NOFOLLOW`, so
/// an entry under a link extracted earlier is refused instead of being written through
/// it. Links are made as they come and checked once everything is in place, by
/// resolving each target through the tree as the kernel would (links to links
/// included): a target that would leave the tree refuses the package.
/// The sum of the sizes a zip's entries declare.
fn declared_size<R: io::Read + io::Seek>(
    mut archive: zip::ZipArchive<R>,
) -> Result<u64, CodeError> {
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        total = total.saturating_add(archive.by_index_raw(i).map_err(corrupt)?.size());
    }
    Ok(total)
}

/// The unzipped size a zip declares.
pub fn unzipped_size_of(zip_bytes: &[u8]) -> Result<u64, CodeError> {
    declared_size(zip::ZipArchive::new(Cursor::new(zip_bytes)).map_err(corrupt)?)
}

fn unpack(zip_bytes: &[u8], dest: &Path) -> Result<(), CodeError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip_bytes)).map_err(corrupt)?;
    let mut declared: u64 = 0;
    let mut declared_footprint: u64 = 0;
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(corrupt)?;
        safe_relative_path(entry.name())?;
        declared = declared.saturating_add(entry.size());
        declared_footprint = declared_footprint.saturating_add(footprint(entry.size()));
    }
    if declared > UNZIPPED_MAX_BYTES || declared_footprint > FOOTPRINT_MAX_BYTES {
        return Err(CodeError::TooLarge);
    }
    fs::create_dir_all(dest)?;
    let mut tree = Extraction::new(dest);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(corrupt)?;
        let name = entry.name().to_string();
        let relative = safe_relative_path(&name)?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let mode = entry.unix_mode();
        if entry.is_dir() {
            tree.folder(&relative, &name)?;
            continue;
        }
        if mode.is_some_and(|m| m & 0o170000 == 0o120000) {
            let mut target = String::new();
            entry
                .by_ref()
                .take(4096)
                .read_to_string(&mut target)
                .map_err(corrupt)?;
            tree.link(&relative, &name, target)?;
            continue;
        }
        tree.file(&relative, &name, &mut entry, mode)?;
    }
    tree.check_links()
}

/// The state of one extraction: what has been made, and what the package still may take.
struct Extraction<'a> {
    dest: &'a Path,
    /// Folders known to be real folders (made here or checked), relative to `dest`.
    folders: std::collections::HashSet<PathBuf>,
    /// Links made, with their targets, checked once the whole tree is in place.
    links: Vec<(PathBuf, String, String)>,
    bytes_left: u64,
    footprint_left: u64,
}

impl<'a> Extraction<'a> {
    fn new(dest: &'a Path) -> Self {
        Self {
            dest,
            folders: std::collections::HashSet::from([PathBuf::new()]),
            links: Vec::new(),
            bytes_left: UNZIPPED_MAX_BYTES,
            footprint_left: FOOTPRINT_MAX_BYTES,
        }
    }

    fn charge(&mut self, bytes: u64) -> Result<(), CodeError> {
        let taken = footprint(bytes);
        if bytes > self.bytes_left || taken > self.footprint_left {
            return Err(CodeError::TooLarge);
        }
        self.bytes_left -= bytes;
        self.footprint_left -= taken;
        Ok(())
    }

    /// Makes `relative` and every folder above it, each a real folder: a link or a file
    /// on the way refuses the entry.
    fn folder(&mut self, relative: &Path, name: &str) -> Result<(), CodeError> {
        let mut path = PathBuf::new();
        for part in relative.components() {
            path.push(part);
            if self.folders.contains(&path) {
                continue;
            }
            let full = self.dest.join(&path);
            match fs::symlink_metadata(&full) {
                Ok(meta) if meta.file_type().is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(CodeError::EscapingEntry(format!(
                        "{name} (under the link {})",
                        path.display()
                    )));
                }
                Ok(_) => {
                    return Err(CodeError::invalid(
                        name,
                        "a file and a folder have the same path",
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.charge(0)?;
                    fs::create_dir(&full)?;
                }
                Err(e) => return Err(e.into()),
            }
            self.folders.insert(path.clone());
        }
        Ok(())
    }

    /// The folder an entry goes in (made as by [`Self::folder`]) and the entry's full path,
    /// which must not already be a folder or a link.
    fn place(&mut self, relative: &Path, name: &str) -> Result<PathBuf, CodeError> {
        if let Some(parent) = relative.parent() {
            self.folder(parent, name)?;
        }
        let full = self.dest.join(relative);
        match fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() => Err(CodeError::invalid(
                name,
                "a link of the package already has this path",
            )),
            Ok(meta) if meta.file_type().is_dir() => Err(CodeError::invalid(
                name,
                "a file and a folder have the same path",
            )),
            _ => Ok(full),
        }
    }

    fn link(&mut self, relative: &Path, name: &str, target: String) -> Result<(), CodeError> {
        if target.is_empty() || target.contains('\0') || Path::new(&target).is_absolute() {
            return Err(CodeError::EscapingEntry(format!("{name} -> {target}")));
        }
        let full = self.place(relative, name)?;
        self.charge(0)?;
        if full.exists() || fs::symlink_metadata(&full).is_ok() {
            return Err(CodeError::invalid(name, "the package has this path twice"));
        }
        std::os::unix::fs::symlink(&target, &full)?;
        self.links
            .push((relative.to_path_buf(), name.to_string(), target));
        Ok(())
    }

    fn file(
        &mut self,
        relative: &Path,
        name: &str,
        data: &mut impl Read,
        mode: Option<u32>,
    ) -> Result<(), CodeError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let full = self.place(relative, name)?;
        // Keep the owner's execute bit (a `bootstrap` must stay executable); drop set-id bits.
        let permissions = match mode {
            Some(m) if m & 0o111 != 0 => 0o755,
            _ => 0o644,
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(permissions)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&full)?;
        let limit = self.bytes_left.min(self.footprint_left);
        let written = io::copy(&mut data.take(limit + 1), &mut file).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                corrupt(e)
            } else {
                CodeError::Io(e)
            }
        })?;
        self.charge(written)?;
        file.set_permissions(fs::Permissions::from_mode(permissions))?;
        Ok(())
    }

    /// Resolves every link's target through the finished tree; one that leaves it (or
    /// loops) refuses the package.
    fn check_links(&self) -> Result<(), CodeError> {
        for (relative, name, target) in &self.links {
            let mut at: Vec<std::ffi::OsString> = relative
                .parent()
                .map(|p| p.iter().map(|c| c.to_os_string()).collect())
                .unwrap_or_default();
            let mut hops = 0;
            if !self.resolves_inside(&mut at, Path::new(target), &mut hops) {
                return Err(CodeError::EscapingEntry(format!("{name} -> {target}")));
            }
        }
        Ok(())
    }

    /// Walks `target` from the folder `at` (components below `dest`), following links
    /// found on the way; false as soon as the walk would leave `dest`.
    fn resolves_inside(
        &self,
        at: &mut Vec<std::ffi::OsString>,
        target: &Path,
        hops: &mut u32,
    ) -> bool {
        if target.is_absolute() {
            return false;
        }
        for component in target.components() {
            match component {
                Component::CurDir => {}
                Component::ParentDir => {
                    if at.pop().is_none() {
                        return false;
                    }
                }
                Component::Normal(part) => {
                    at.push(part.to_os_string());
                    let here: PathBuf = at.iter().fold(self.dest.to_path_buf(), |p, c| p.join(c));
                    let is_link =
                        fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink());
                    if is_link {
                        *hops += 1;
                        let Ok(next) = fs::read_link(&here) else {
                            return false;
                        };
                        at.pop();
                        if *hops > SYMLINK_HOPS_MAX || !self.resolves_inside(at, &next, hops) {
                            return false;
                        }
                    }
                }
                Component::RootDir | Component::Prefix(_) => return false,
            }
        }
        true
    }
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
            if mode & 0o170000 == 0o120000 {
                let target = std::str::from_utf8(data).unwrap();
                writer.add_symlink(*name, target, options).unwrap();
            } else if mode & 0o170000 == 0o040000 {
                writer.add_directory(*name, options).unwrap();
            } else {
                writer.start_file(*name, options).unwrap();
                writer.write_all(data).unwrap();
            }
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
    fn layers_merge_in_order_and_the_merged_tree_goes_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path().join("code")).unwrap();
        let first = store
            .put(&zip_of(&[
                ("python/a.py", b"first", 0o644),
                ("python/only_first.py", b"1", 0o644),
                ("bin/tool", b"#!/bin/sh\n", 0o755),
            ]))
            .unwrap();
        let second = store
            .put(&zip_of(&[("python/a.py", b"second", 0o644)]))
            .unwrap();
        let digests = vec![first.sha256_hex.clone(), second.sha256_hex.clone()];
        let merged = store.merged_tree(&digests).unwrap();
        assert_eq!(fs::read(merged.join("python/a.py")).unwrap(), b"second");
        assert_eq!(fs::read(merged.join("python/only_first.py")).unwrap(), b"1");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(merged.join("bin/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        // The layers' own trees are untouched; the same list gives the same folder.
        assert_eq!(
            fs::read(store.task_root(&first.sha256_hex).join("python/a.py")).unwrap(),
            b"first"
        );
        assert_eq!(store.merged_tree(&digests).unwrap(), merged);
        // At start, with the layers in use, the merged folder goes (it is made again).
        let in_use = digests.iter().cloned().collect();
        store.remove_unreferenced(&in_use).unwrap();
        assert!(!merged.exists());
        assert!(store.task_root(&first.sha256_hex).is_dir());
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

    const LINK: u32 = 0o120777;
    const FILE: u32 = 0o100644;

    /// Unpacks `entries` into a fresh folder (inside an outer one that a leaving entry
    /// would reach first) and says what happened.
    fn unpack_in_sandbox(
        entries: &[(&str, &[u8], u32)],
    ) -> (tempfile::TempDir, Result<(), CodeError>) {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("a/b/c/d/e/f/g/h/i/j/k/tree");
        let result = unpack(&zip_of(entries), &dest);
        (outer, result)
    }

    /// Every file under `root` that is not inside `root/a/.../tree`.
    fn files_outside_tree(root: &Path) -> Vec<PathBuf> {
        let tree = root.join("a/b/c/d/e/f/g/h/i/j/k/tree");
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                if path.starts_with(&tree) {
                    continue;
                } else if meta.is_dir() {
                    stack.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        found
    }

    #[test]
    fn link_chains_cannot_carry_writes_out_at_any_depth() {
        for depth in 1..=9 {
            let dirs: Vec<String> = (0..depth).map(|i| format!("d{i}")).collect();
            let base = dirs.join("/");
            let up_to_root = vec![".."; depth].join("/");
            let first = format!("{base}/l");
            // `l` leads back to the tree's root (lexically inside); `w` under it climbs
            // further, which only the physical walk shows to leave the tree.
            let second = format!("{first}/w");
            let escape = format!("{second}/ESCAPED");
            let climb = vec![".."; depth + 2].join("/");
            let (outer, result) = unpack_in_sandbox(&[
                ("app.py", b"x", FILE),
                (&first, up_to_root.as_bytes(), LINK),
                (&second, climb.as_bytes(), LINK),
                (&escape, b"owned", FILE),
            ]);
            assert!(
                matches!(result, Err(CodeError::EscapingEntry(_))),
                "depth {depth}: {result:?}"
            );
            assert!(files_outside_tree(outer.path()).is_empty(), "depth {depth}");
        }
    }

    #[test]
    fn writes_under_any_extracted_link_are_refused() {
        // A link that stays inside is still no path to write through.
        let (outer, result) = unpack_in_sandbox(&[
            ("real/keep.txt", b"k", FILE),
            ("alias", b"real", LINK),
            ("alias/new.txt", b"n", FILE),
        ]);
        assert!(
            matches!(result, Err(CodeError::EscapingEntry(_))),
            "{result:?}"
        );
        assert!(files_outside_tree(outer.path()).is_empty());
        // Nor is a folder entry under one.
        let (_outer, result) =
            unpack_in_sandbox(&[("alias", b".", LINK), ("alias/sub/", b"", 0o40755)]);
        assert!(
            matches!(result, Err(CodeError::EscapingEntry(_))),
            "{result:?}"
        );
    }

    #[test]
    fn link_targets_are_resolved_through_other_links() {
        // `up` resolves to the tree's root; `out` = `up/..` is lexically inside but
        // physically the tree's parent.
        let (_o, result) = unpack_in_sandbox(&[("d/up", b"..", LINK), ("out", b"d/up/..", LINK)]);
        assert!(
            matches!(result, Err(CodeError::EscapingEntry(_))),
            "{result:?}"
        );
        // The same when the outer link comes first in the archive.
        let (_o, result) = unpack_in_sandbox(&[("out", b"d/up/..", LINK), ("d/up", b"..", LINK)]);
        assert!(
            matches!(result, Err(CodeError::EscapingEntry(_))),
            "{result:?}"
        );
        // Links to links that stay inside, dangling links and chains are fine.
        let (outer, result) = unpack_in_sandbox(&[
            ("lib/python/m.py", b"m", FILE),
            ("lib64", b"lib", LINK),
            ("pkg/current", b"../lib64/python", LINK),
            ("bin/tool", b"../pkg/current/m.py", LINK),
            ("dangling", b"nowhere/at/all", LINK),
        ]);
        result.unwrap();
        let tree = outer.path().join("a/b/c/d/e/f/g/h/i/j/k/tree");
        assert_eq!(fs::read(tree.join("bin/tool")).unwrap(), b"m");
        // A loop is refused rather than followed for ever.
        let (_o, result) = unpack_in_sandbox(&[("p", b"q", LINK), ("q", b"p/x", LINK)]);
        assert!(result.is_err());
    }

    #[test]
    fn absolute_and_empty_link_targets_are_refused() {
        for target in ["/etc/passwd", "/", ""] {
            let (_o, result) = unpack_in_sandbox(&[("l", target.as_bytes(), LINK)]);
            assert!(
                matches!(result, Err(CodeError::EscapingEntry(_))),
                "{target}: {result:?}"
            );
        }
    }

    #[test]
    fn links_made_after_files_of_the_same_path_are_refused() {
        let (_o, result) = unpack_in_sandbox(&[("a/f.txt", b"f", FILE), ("a", b"b", LINK)]);
        assert!(result.is_err());
        assert!(result.unwrap_err().is_client_error());
    }

    #[test]
    fn names_a_filesystem_cannot_hold_are_client_errors() {
        let long = "n".repeat(256);
        let (_o, result) = unpack_in_sandbox(&[(&long, b"x", FILE)]);
        assert!(
            matches!(result, Err(CodeError::InvalidEntry { .. })),
            "{result:?}"
        );
        let (_o, result) = unpack_in_sandbox(&[("same", b"x", FILE), ("same/inner", b"y", FILE)]);
        assert!(
            matches!(result, Err(CodeError::InvalidEntry { .. })),
            "{result:?}"
        );
        let (_o, result) = unpack_in_sandbox(&[("dir/inner", b"y", FILE), ("dir", b"x", FILE)]);
        assert!(
            matches!(result, Err(CodeError::InvalidEntry { .. })),
            "{result:?}"
        );
        let ok = "n".repeat(255);
        let (_o, result) = unpack_in_sandbox(&[(&ok, b"x", FILE)]);
        result.unwrap();
    }

    #[test]
    fn stored_bytes_count_the_zip_and_its_unpacked_blocks() {
        let zip = zip_of(&[
            ("a", b"x", FILE),
            ("b/c", b"yy", FILE),
            ("d", &[0; 5000], FILE),
        ]);
        assert_eq!(stored_bytes(&zip), zip.len() as u64 + 4096 + 4096 + 8192);
        assert_eq!(stored_bytes(b"not a zip"), 9);
    }

    #[test]
    fn many_tiny_entries_count_their_real_footprint() {
        let names: Vec<String> = (0..(FOOTPRINT_MAX_BYTES / BLOCK_BYTES + 1))
            .map(|i| format!("f{i}"))
            .collect();
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for name in &names {
            writer.start_file(name.as_str(), options).unwrap();
            writer.write_all(b"x").unwrap();
        }
        let zip = writer.finish().unwrap().into_inner();
        let dir = tempfile::tempdir().unwrap();
        let result = unpack(&zip, &dir.path().join("tree"));
        assert!(matches!(result, Err(CodeError::TooLarge)), "{result:?}");
        assert!(
            !dir.path().join("tree").exists(),
            "refused before anything is written"
        );
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
