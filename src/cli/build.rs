//! Building code before it is deployed: the user's own build command (`--build`), and a
//! Cargo project deployed to a `provided` runtime, built in release mode and packaged
//! as its `bootstrap`. Build output goes to stderr as it comes (stdout stays the CLI's).

use std::io::{BufRead, BufReader, Cursor, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Whether `path` is a Cargo project to build for `runtime` (an OS-only runtime, whose
/// code is a `bootstrap` executable).
pub fn is_cargo_project(path: &Path, runtime: &str) -> bool {
    runtime.starts_with("provided") && path.join("Cargo.toml").is_file()
}

/// Our stderr, for a child's output (its stdout included) to show as it comes.
fn stderr_for_child() -> anyhow::Result<Stdio> {
    let fd = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stderr for the build's output")?;
    Ok(Stdio::from(fd))
}

/// Runs `command` with `sh -c` in `dir`, its output on stderr; fails when it does.
pub fn run_command(command: &str, dir: &Path) -> anyhow::Result<()> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stderr_for_child()?)
        .stderr(Stdio::inherit())
        .status()
        .with_context(|| format!("running the build command `{command}`"))?;
    if !status.success() {
        bail!("the build command `{command}` failed ({status})");
    }
    Ok(())
}

/// Builds the Cargo project at `dir` (`cargo build --release`, the compiler's messages on
/// stderr as they come) and returns its executable: the one named `bin`, else the only
/// one the project builds, else the one named `bootstrap`.
pub fn cargo_build(dir: &Path, bin: Option<&str>) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(bin) = bin {
        command.args(["--bin", bin]);
    }
    let mut child = command.spawn().context(
        "running cargo to build the project's bootstrap (is Rust installed? https://rustup.rs)",
    )?;
    let stdout = child.stdout.take().context("reading cargo's messages")?;
    let mut built: Vec<(String, PathBuf)> = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's messages")?;
        if let Some(executable) = executable_of(&line) {
            built.push(executable);
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!(
            "cargo build --release of {} failed ({status})",
            manifest.display()
        );
    }
    choose_executable(built, bin)
}

/// The `(name, path)` of the binary a `compiler-artifact` message of cargo's JSON
/// output reports, if it reports one.
fn executable_of(line: &str) -> Option<(String, PathBuf)> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message["reason"] != "compiler-artifact" {
        return None;
    }
    let path = message["executable"].as_str()?;
    let kinds = message["target"]["kind"].as_array()?;
    if !kinds.iter().any(|k| k == "bin") {
        return None;
    }
    let name = message["target"]["name"].as_str()?.to_string();
    Some((name, PathBuf::from(path)))
}

fn choose_executable(
    mut built: Vec<(String, PathBuf)>,
    bin: Option<&str>,
) -> anyhow::Result<PathBuf> {
    built.dedup();
    if let Some(bin) = bin {
        return built
            .into_iter()
            .find(|(name, _)| name == bin)
            .map(|(_, path)| path)
            .with_context(|| format!("cargo built no binary named {bin}"));
    }
    match built.len() {
        0 => bail!("the Cargo project has no binary to run as bootstrap (a [[bin]] target)"),
        1 => Ok(built.remove(0).1),
        _ => {
            if let Some((_, path)) = built.iter().find(|(name, _)| name == "bootstrap") {
                return Ok(path.clone());
            }
            let names: Vec<_> = built.iter().map(|(name, _)| name.as_str()).collect();
            bail!(
                "the Cargo project builds several binaries ({}): name the one to deploy with --bin",
                names.join(", ")
            )
        }
    }
}

/// A zip holding `executable` as `bootstrap` (mode 0755), what a `provided` runtime runs.
pub fn bootstrap_zip(executable: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(executable)
        .with_context(|| format!("reading the built {}", executable.display()))?;
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755);
    writer.start_file("bootstrap", options)?;
    writer.write_all(&bytes)?;
    Ok(writer.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_read_from_cargos_messages() {
        let bin = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"bootstrap"},"executable":"/t/release/bootstrap"}"#;
        let lib = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"x"},"executable":null}"#;
        let done = r#"{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_of(bin),
            Some(("bootstrap".into(), "/t/release/bootstrap".into()))
        );
        assert_eq!(executable_of(lib), None);
        assert_eq!(executable_of(done), None);
        assert_eq!(executable_of("Compiling x"), None);
    }

    #[test]
    fn the_only_binary_or_bootstrap_or_the_one_named_is_chosen() {
        let one = vec![("app".to_string(), PathBuf::from("/a"))];
        assert_eq!(
            choose_executable(one.clone(), None).unwrap(),
            PathBuf::from("/a")
        );
        let two = vec![
            ("app".to_string(), PathBuf::from("/a")),
            ("bootstrap".to_string(), PathBuf::from("/b")),
        ];
        assert_eq!(
            choose_executable(two.clone(), None).unwrap(),
            PathBuf::from("/b")
        );
        assert_eq!(
            choose_executable(two, Some("app")).unwrap(),
            PathBuf::from("/a")
        );
        let ambiguous = vec![
            ("a".to_string(), PathBuf::from("/a")),
            ("b".to_string(), PathBuf::from("/b")),
        ];
        let err = choose_executable(ambiguous, None).unwrap_err().to_string();
        assert!(err.contains("--bin"), "{err}");
        assert!(choose_executable(vec![], None).is_err());
        assert!(choose_executable(one, Some("other")).is_err());
    }

    #[test]
    fn the_bootstrap_zip_holds_one_executable() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("app");
        std::fs::write(&exe, b"#!/bin/sh\n").unwrap();
        let zip = bootstrap_zip(&exe).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        assert_eq!(archive.len(), 1);
        let entry = archive.by_index(0).unwrap();
        assert_eq!(entry.name(), "bootstrap");
        assert_eq!(entry.unix_mode().unwrap() & 0o777, 0o755);
    }
}
