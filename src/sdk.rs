//! The AWS SDKs the managed runtimes provide, as Lambda's do: boto3 for Python functions
//! and the AWS SDK for JavaScript v3 clients for Node functions, importable without
//! bundling them.
//!
//! `shoal sdk install` puts them in the data folder's runtime folder
//! (`<data-dir>/runtimes/sdk/python`, `<data-dir>/runtimes/sdk/node/node_modules`),
//! which every environment sees read-only: isolated ones at `/var/runtime/sdk/...`, the
//! others where it is. The Python runtime loop puts `sdk/python` on `sys.path` after the
//! function's own code (so a bundled boto3 wins) and before the interpreter's
//! site-packages. Node finds packages by walking up from the importing file to a
//! `node_modules` folder (for `import` and `require` alike), so the Node SDK is made
//! visible at the folder above the function's code: `/var/node_modules` in an isolated
//! environment (a read-only mount), `<data-dir>/node_modules` (a link) for the others.
//! A package the function bundles in its own `node_modules` is found first.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Where the SDKs live under the runtime folder.
pub const SDK_DIR: &str = "sdk";
/// The Python SDK packages installed.
const PYTHON_PACKAGES: &[&str] = &["boto3"];
/// The AWS SDK for JavaScript v3 clients installed: the services Shoal serves or will.
const NODE_PACKAGES: &[&str] = &[
    "@aws-sdk/client-lambda",
    "@aws-sdk/client-sqs",
    "@aws-sdk/client-sns",
    "@aws-sdk/client-eventbridge",
    "@aws-sdk/client-sfn",
    "@aws-sdk/client-scheduler",
];

#[derive(Debug, clap::Args)]
pub struct SdkArgs {
    #[command(subcommand)]
    pub command: SdkCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SdkCommand {
    /// Install boto3 and the AWS SDK for JavaScript v3 clients for functions to import
    /// (from PyPI and npm); a running server's new environments see them at once.
    Install(InstallArgs),
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The server's data folder.
    #[arg(long, env = "SHOAL_DATA_DIR", default_value = "./.shoal")]
    pub data_dir: PathBuf,
    /// Python to run pip with (the interpreter that runs Python functions).
    #[arg(long, env = "SHOAL_PYTHON", default_value = "python3")]
    pub python: String,
    /// npm to install the Node SDK with.
    #[arg(long, default_value = "npm")]
    pub npm: String,
    /// Install only the SDK of one language (`python` or `node`).
    #[arg(long, value_parser = ["python", "node"])]
    pub only: Option<String>,
}

/// The SDK folder of a runtime folder.
pub fn sdk_dir(runtimes_dir: &Path) -> PathBuf {
    runtimes_dir.join(SDK_DIR)
}

/// The Node SDK's `node_modules` under a runtime folder, if it is installed.
pub fn node_modules(runtimes_dir: &Path) -> Option<PathBuf> {
    let dir = sdk_dir(runtimes_dir).join("node").join("node_modules");
    dir.is_dir().then_some(dir)
}

/// Which SDKs a runtime folder holds, in words for the start-up log.
pub fn installed(runtimes_dir: &Path) -> Vec<&'static str> {
    let sdk = sdk_dir(runtimes_dir);
    let mut found = Vec::new();
    if sdk.join("python").join("boto3").is_dir() {
        found.push("python (boto3)");
    }
    if node_modules(runtimes_dir).is_some() {
        found.push("node (@aws-sdk v3)");
    }
    found
}

/// Makes the Node SDK visible to unisolated functions, whose code is at
/// `<data-dir>/code/<digest>/`: `<data-dir>/node_modules` links to it (and no link is
/// left when it is not installed).
pub fn link_for_unisolated(data_dir: &Path, runtimes_dir: &Path) -> std::io::Result<()> {
    let link = data_dir.join("node_modules");
    if link
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        std::fs::remove_file(&link)?;
    }
    match node_modules(runtimes_dir) {
        Some(target) if !link.exists() => std::os::unix::fs::symlink(target, &link),
        _ => Ok(()),
    }
}

/// `shoal sdk install`.
pub fn install(args: &InstallArgs) -> anyhow::Result<()> {
    let sdk = sdk_dir(&args.data_dir.join("runtimes"));
    std::fs::create_dir_all(&sdk).with_context(|| format!("cannot create {}", sdk.display()))?;
    if args.only.as_deref() != Some("node") {
        replace(&sdk.join("python"), |staging| {
            let mut pip = Command::new(&args.python);
            pip.args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-warn-script-location", "--target"])
            .arg(staging)
            .args(PYTHON_PACKAGES);
            run(pip, "pip")
        })?;
        println!(
            "installed {} in {}",
            PYTHON_PACKAGES.join(", "),
            sdk.join("python").display()
        );
    }
    if args.only.as_deref() != Some("python") {
        replace(&sdk.join("node"), |staging| {
            let mut npm = Command::new(&args.npm);
            npm.args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(staging)
            .args(NODE_PACKAGES);
            run(npm, "npm")
        })?;
        println!(
            "installed {} in {}",
            NODE_PACKAGES.join(", "),
            sdk.join("node").display()
        );
    }
    Ok(())
}

/// Installs into a staging folder beside `dir`, then swaps it in, so that environments
/// never see half an installation.
fn replace(dir: &Path, fill: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let staging = dir.with_extension("new");
    let old = dir.with_extension("old");
    for leftover in [&staging, &old] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover)?;
        }
    }
    std::fs::create_dir_all(&staging)?;
    fill(&staging)?;
    if dir.exists() {
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(&staging, dir)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

fn run(mut command: Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {what}: is it installed?"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_sdk_is_linked_for_unisolated_functions_only_when_installed() {
        let data = tempfile::tempdir().unwrap();
        let runtimes = data.path().join("runtimes");
        let link = data.path().join("node_modules");
        link_for_unisolated(data.path(), &runtimes).unwrap();
        assert!(link.symlink_metadata().is_err(), "nothing to link yet");
        let modules = sdk_dir(&runtimes).join("node").join("node_modules");
        std::fs::create_dir_all(modules.join("@aws-sdk")).unwrap();
        link_for_unisolated(data.path(), &runtimes).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), modules);
        assert!(link.join("@aws-sdk").is_dir());
        assert_eq!(installed(&runtimes), vec!["node (@aws-sdk v3)"]);
        std::fs::remove_dir_all(sdk_dir(&runtimes)).unwrap();
        link_for_unisolated(data.path(), &runtimes).unwrap();
        assert!(link.symlink_metadata().is_err(), "a stale link is removed");
    }

    #[test]
    fn an_installation_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("python");
        replace(&target, |staging| {
            Ok(std::fs::write(staging.join("v1"), "")?)
        })
        .unwrap();
        replace(&target, |staging| {
            Ok(std::fs::write(staging.join("v2"), "")?)
        })
        .unwrap();
        assert!(target.join("v2").exists() && !target.join("v1").exists());
        let failed = replace(&target, |_| bail!("no network"));
        assert!(failed.is_err());
        assert!(
            target.join("v2").exists(),
            "a failed install leaves the last one"
        );
    }
}
