//! Disk-backed `/tmp`: each isolated environment's `/tmp` is an ext4 filesystem in a sparse
//! image file of its own folder, loop-mounted by the sandbox init.
//!
//! A tmpfs `/tmp` would keep its files in memory charged to the environment's memory
//! cgroup, so a 128 MB function could not fill a 512 MB `/tmp`. On disk, as on Lambda,
//! `EphemeralStorage` and `MemorySize` are separate: what the function writes goes
//! through the page cache (reclaimable) to the image, and the filesystem's size is the
//! hard limit (ENOSPC inside, nothing outside); deleted files give their disk back
//! (`discard` punches holes in the sparse image). Each size is formatted once (a
//! journal-less `mkfs.ext4`, ~3 ms) into a template; an environment gets a sparse copy of
//! it (~150 KB of data, well under a millisecond), removed with the environment's folder.
//! The loop device detaches itself when the environment's mount namespace ends
//! (`LO_FLAGS_AUTOCLEAR`). Each environment is promised its image's whole size
//! ([`image_bytes`]) on the data disk ([`crate::disk::DiskBudget::reserve_tmp`]), so a
//! sparse image can always grow to its size.
//!
//! Where `mkfs.ext4` or loop devices are missing, [`TmpDisks::probe`] says why and the
//! sandbox falls back to a tmpfs `/tmp` (with a warning).

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Makes `/tmp` images.
#[derive(Debug)]
pub struct TmpDisks {
    mkfs: PathBuf,
    /// Where the formatted templates are kept, one per size.
    templates: PathBuf,
    /// Sizes whose template exists.
    formatted: Mutex<HashSet<u32>>,
}

/// Where `mkfs.ext4` is looked for besides `PATH`.
const SBIN: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

impl TmpDisks {
    /// Checks that an image can be made here and loop-mounted by the sandbox init (`exe`
    /// re-executed with `probe_args`), using `scratch` for a throwaway image.
    pub fn probe(exe: &Path, probe_args: &[&str], scratch: &Path) -> Result<Self, String> {
        let mkfs = find_mkfs().ok_or("mkfs.ext4 was not found")?;
        let templates = scratch.join(".tmp-templates");
        fs::create_dir_all(&templates).map_err(|e| format!("{}: {e}", templates.display()))?;
        let disks = Self {
            mkfs,
            templates,
            formatted: Mutex::new(HashSet::new()),
        };
        let image = scratch.join(format!("tmp-probe-{}.img", std::process::id()));
        let result = (|| {
            disks.make(&image, 16)?;
            let output = Command::new(exe)
                .args(probe_args)
                .arg(&image)
                .env_clear()
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run the sandbox probe: {e}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
            }
        })();
        let _ = fs::remove_file(&image);
        result.map(|()| disks)
    }

    /// Makes an empty ext4 image at `path` with at least `size_mb` MB free.
    pub fn make(&self, path: &Path, size_mb: u32) -> Result<(), String> {
        let template = self.template(size_mb)?;
        // A filesystem that cannot say where a file's data is gets a formatted image.
        copy_sparse(&template, path).or_else(|_| self.format(path, size_mb))
    }

    /// Removes the templates (at shutdown).
    pub fn remove_templates(&self) {
        let _ = fs::remove_dir_all(&self.templates);
        self.formatted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The formatted template of `size_mb`, made on first use.
    fn template(&self, size_mb: u32) -> Result<PathBuf, String> {
        let path = self.templates.join(format!("{size_mb}.img"));
        let mut formatted = self.formatted.lock().unwrap_or_else(|p| p.into_inner());
        if !formatted.contains(&size_mb) {
            let partial = path.with_extension("partial");
            self.format(&partial, size_mb)?;
            fs::rename(&partial, &path).map_err(|e| format!("{}: {e}", path.display()))?;
            formatted.insert(size_mb);
        }
        Ok(path)
    }

    fn format(&self, path: &Path, size_mb: u32) -> Result<(), String> {
        let file = fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        file.set_len(image_bytes(size_mb))
            .map_err(|e| format!("sizing {}: {e}", path.display()))?;
        drop(file);
        let output = Command::new(&self.mkfs)
            .args([
                "-q",
                "-F",
                // No journal (scratch space), no room to grow; metadata initialised lazily
                // (the sparse file reads as zeros) and no reserved blocks.
                "-O",
                "^has_journal,^resize_inode",
                "-E",
                "lazy_itable_init=1,nodiscard",
                "-m",
                "0",
            ])
            .arg(path)
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", self.mkfs.display()))?;
        if !output.status.success() {
            return Err(format!(
                "mkfs.ext4 failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(())
    }
}

/// The image size that leaves at least `size_mb` MB free after ext4's metadata (inode
/// tables and bitmaps take 1.5-4%, proportionally more on small filesystems).
pub fn image_bytes(size_mb: u32) -> u64 {
    let size = u64::from(size_mb) << 20;
    size + size / 25 + (4 << 20)
}

/// Copies `from` to a new file `to`, writing only its data (holes stay holes).
fn copy_sparse(from: &Path, to: &Path) -> std::io::Result<()> {
    use nix::unistd::{Whence, lseek};
    let source = fs::File::open(from)?;
    let target = fs::File::create(to)?;
    let len = source.metadata()?.len();
    target.set_len(len)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0i64;
    while (at as u64) < len {
        let data = match lseek(source.as_raw_fd(), at, Whence::SeekData) {
            Ok(data) => data,
            Err(nix::errno::Errno::ENXIO) => break, // no data past `at`
            Err(e) => return Err(e.into()),
        };
        let hole =
            lseek(source.as_raw_fd(), data, Whence::SeekHole).map_err(std::io::Error::from)?;
        let mut offset = data as u64;
        while offset < hole as u64 {
            let want = buf.len().min((hole as u64 - offset) as usize);
            let got = source.read_at(&mut buf[..want], offset)?;
            if got == 0 {
                break;
            }
            target.write_all_at(&buf[..got], offset)?;
            offset += got as u64;
        }
        at = hole;
    }
    Ok(())
}

fn find_mkfs() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join("mkfs.ext4"))
        .find(|candidate| candidate.is_file())
}

// Loop device interface (linux/loop.h).
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    size_limit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Loop-mounts the ext4 `image` on `target` (in the calling process's mount namespace),
/// makes it a world-writable sticky folder and leaves it empty. The loop device goes away
/// by itself once the filesystem is unmounted.
#[allow(unsafe_code)]
pub fn mount(image: &Path, target: &Path) -> Result<(), String> {
    use nix::mount::{MsFlags, mount};
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(|e| format!("/dev/loop-control: {e}"))?;
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(|e| format!("{}: {e}", image.display()))?;
    // Another environment may take the same free device between the two calls: retry.
    // Each lost race is another's win, so this ends; many starting at once take a while.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for attempt in 0u32.. {
        if std::time::Instant::now() > deadline {
            break;
        }
        if attempt > 4 {
            std::thread::sleep(std::time::Duration::from_micros(
                200 * u64::from(attempt.min(20)),
            ));
        }
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let number = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if number < 0 {
            return Err(format!(
                "no free loop device: {}",
                std::io::Error::last_os_error()
            ));
        }
        let path = format!("/dev/loop{number}");
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: LoopConfig is plain old data; all-zero is a valid value.
        let mut config: LoopConfig = unsafe { std::mem::zeroed() };
        config.fd = backing.as_raw_fd() as u32;
        config.info.flags = LO_FLAGS_AUTOCLEAR;
        // SAFETY: LOOP_CONFIGURE reads a loop_config that lives across the call.
        if unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE, &config) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) {
                continue;
            }
            return Err(format!("attaching {}: {e}", image.display()));
        }
        // Mounted before `device` is closed: with AUTOCLEAR the last close detaches.
        mount(
            Some(path.as_str()),
            target,
            Some("ext4"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            // Deleted files give their disk back: discards punch holes in the image.
            Some("noinit_itable,discard"),
        )
        .map_err(|e| format!("mounting {path}: {e}"))?;
        drop(device);
        fs::set_permissions(target, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
            .map_err(|e| format!("chmod /tmp: {e}"))?;
        let _ = fs::remove_dir(target.join("lost+found"));
        return Ok(());
    }
    Err("no loop device could be had within 10 s (every free one was taken by others)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_copies_keep_the_data_and_the_holes() {
        let dir = std::env::temp_dir().join(format!("shoal-sparse-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (from, to) = (dir.join("from.img"), dir.join("to.img"));
        let source = fs::File::create(&from).unwrap();
        source.set_len(64 << 20).unwrap();
        for (offset, byte) in [(0u64, 1u8), (5 << 20, 2), ((64 << 20) - 4096, 3)] {
            source.write_all_at(&[byte; 4096], offset).unwrap();
        }
        drop(source);
        copy_sparse(&from, &to).unwrap();
        assert_eq!(fs::read(&from).unwrap(), fs::read(&to).unwrap());
        let allocated = fs::metadata(&to).unwrap().blocks() * 512;
        assert!(allocated < 1 << 20, "the copy allocated {allocated} bytes");
        fs::remove_dir_all(&dir).unwrap();
    }
}
