//! `shoal dev` (`shoal deploy --watch`): the inner loop. Deploys a folder, then watches it
//! and on every change builds (the `--build` command, or cargo for a Cargo project) and
//! replaces the function's code, printing one line per redeploy with its times.
//!
//! The folder is watched by polling its files' sizes and modification times every
//! [`POLL`] (portable, and cheap for source trees; build output, `.git`, `target` and
//! `node_modules` are not watched). The files are looked at before each build, so an
//! edit made while a build and deploy run is picked up after it; with `--build`, what
//! changes during the build command is taken as its output (the baseline is looked at
//! again when it ends), so a build never triggers itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::bail;

use super::deploy::{DeployArgs, apply, build_package, finish, function_name, update_code};

/// How often the folder is looked at.
const POLL: Duration = Duration::from_millis(100);

/// How long a change is let settle (an editor's save in several writes) before building.
const SETTLE: Duration = Duration::from_millis(30);

/// Folders never watched: version control, build output, installed packages.
const SKIPPED_DIRS: [&str; 5] = [".git", "target", "node_modules", "__pycache__", ".venv"];

/// Every watched file's (modification time in ns, size), by path.
type Snapshot = BTreeMap<PathBuf, (u128, u64)>;

/// The files under `root` (but not under `skip` or a [`SKIPPED_DIRS`] folder, nor an
/// editor's swap file) with their modification times and sizes.
fn snapshot(root: &Path, skip: &[PathBuf]) -> Snapshot {
    let mut files = Snapshot::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !SKIPPED_DIRS.contains(&name.as_ref()) && !skip.contains(&path) {
                    stack.push(path);
                }
            } else if !is_scratch_file(&name)
                && let Ok(meta) = entry.metadata()
            {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or_default();
                files.insert(path, (modified, meta.len()));
            }
        }
    }
    files
}

/// Editors' swap, backup and lock files, and compiled Python.
fn is_scratch_file(name: &str) -> bool {
    name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with('~')
        || name.starts_with(".#")
        || name.ends_with(".pyc")
        || name == "4913"
}

/// The first path that differs between two snapshots (added, removed or changed).
fn first_change(before: &Snapshot, after: &Snapshot) -> Option<PathBuf> {
    after
        .iter()
        .find(|(path, stamp)| before.get(*path) != Some(stamp))
        .map(|(path, _)| path.clone())
        .or_else(|| {
            before
                .keys()
                .find(|path| !after.contains_key(*path))
                .cloned()
        })
}

/// Builds what `args` say and returns the zip, with the snapshot the next change is
/// judged against: the folder as it was before the build, or, when a `--build` command
/// ran (it may write anywhere in the folder), as it is after.
fn build_and_baseline(
    args: &DeployArgs,
    root: &Path,
    skip: &[PathBuf],
) -> (anyhow::Result<Vec<u8>>, Snapshot) {
    let before = snapshot(root, skip);
    let zip = build_package(args);
    let baseline = if args.build.is_some() {
        snapshot(root, skip)
    } else {
        before
    };
    (zip, baseline)
}

/// `850 ms`, `1.42 s`.
fn took(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// The time of day (UTC) a line is printed at.
fn clock() -> String {
    let now = crate::timefmt::iso_timestamp(crate::timefmt::now_ms());
    now[11..19].to_string()
}

pub async fn run(args: DeployArgs) -> anyhow::Result<()> {
    if !args.path.is_dir() {
        bail!(
            "--watch needs a folder to watch; {} is not one",
            args.path.display()
        );
    }
    let client = args.endpoint.client().with_progress();
    let name = function_name(&args)?;
    let root = std::fs::canonicalize(&args.path)?;
    // The deployed output is not watched: it changes with every build.
    let skip: Vec<PathBuf> = args
        .code
        .iter()
        .filter_map(|code| std::fs::canonicalize(code).ok())
        .collect();

    let started = Instant::now();
    let (zip, mut baseline) = build_and_baseline(&args, &root, &skip);
    let zip = zip?;
    let built = started.elapsed();
    apply(&client, &args, &name, &zip).await?;
    finish(&client, &args, &name).await?;
    say!(
        "{} deployed {name} in {} (build {}, deploy {})",
        clock(),
        took(started.elapsed()),
        took(built),
        took(started.elapsed() - built)
    );
    eprintln!("watching {} for changes (Ctrl-C to stop)", root.display());
    loop {
        tokio::time::sleep(POLL).await;
        let now = snapshot(&root, &skip);
        let Some(changed) = first_change(&baseline, &now) else {
            continue;
        };
        tokio::time::sleep(SETTLE).await;
        let started = Instant::now();
        let shown = changed.strip_prefix(&root).unwrap_or(&changed).display();
        let (zip, next_baseline) = build_and_baseline(&args, &root, &skip);
        baseline = next_baseline;
        let zip = match zip {
            Ok(zip) => zip,
            Err(e) => {
                eprintln!(
                    "{} build failed after a change to {shown}: {e:#}; waiting for the next change",
                    clock()
                );
                continue;
            }
        };
        let built = started.elapsed();
        eprintln!("{} build finished in {}", clock(), took(built));
        // A dotenv file may have changed with the code: the configuration goes too.
        let deployed = if args.env_file.is_some() {
            apply(&client, &args, &name, &zip).await.map(|_| ())
        } else {
            update_code(&client, &name, &zip).await
        };
        match deployed {
            Ok(()) => say!(
                "{} redeployed {name} in {} (build {}, deploy {}) after a change to {shown}",
                clock(),
                took(started.elapsed()),
                took(built),
                took(started.elapsed() - built)
            ),
            Err(e) => eprintln!("{} redeploy failed: {e:#}", clock()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_sees_edits_additions_and_removals_but_not_skipped_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("app.py"), "a").unwrap();
        std::fs::create_dir_all(root.join("target/release")).unwrap();
        std::fs::create_dir_all(root.join("out")).unwrap();
        let skip = vec![root.join("out")];
        let before = snapshot(root, &skip);
        assert_eq!(before.len(), 1);
        // Build output and swap files are not changes.
        std::fs::write(root.join("target/release/bootstrap"), "x").unwrap();
        std::fs::write(root.join("out/bundle.js"), "x").unwrap();
        std::fs::write(root.join(".app.py.swp"), "x").unwrap();
        assert_eq!(first_change(&before, &snapshot(root, &skip)), None);
        // A new size is a change, whatever the clock's resolution.
        std::fs::write(root.join("app.py"), "ab").unwrap();
        let edited = snapshot(root, &skip);
        assert_eq!(first_change(&before, &edited), Some(root.join("app.py")));
        std::fs::write(root.join("lib.py"), "").unwrap();
        let added = snapshot(root, &skip);
        assert_eq!(first_change(&edited, &added), Some(root.join("lib.py")));
        std::fs::remove_file(root.join("lib.py")).unwrap();
        assert_eq!(
            first_change(&added, &snapshot(root, &skip)),
            Some(root.join("lib.py"))
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(took(Duration::from_millis(42)), "42 ms");
        assert_eq!(took(Duration::from_millis(1420)), "1.42 s");
    }
}
