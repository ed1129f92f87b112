//! The runtime catalogue: which Lambda runtime identifiers this host can serve, and how.
//!
//! A runtime identifier (`python3.12`, `nodejs20.x`, `provided.al2023`, ...) maps to a
//! [`Launch`]: the program an execution environment starts. `provided*` runs the package's
//! own `bootstrap`; `python3.x` and `nodejsNN.x` run a runtime loop that Shoal ships
//! (embedded in the binary, written under `<data-dir>/runtimes/` at start) with an
//! interpreter found on this host. Interpreters are resolved once, at start, to absolute
//! paths (a `pyenv` shim is followed to the real executable), so a function never depends
//! on the server's `PATH`. A runtime the host cannot serve is refused when the function is
//! created, not at its first invoke.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const PYTHON_LOOP: &str = include_str!("../runtimes/python/shoal_runtime.py");
/// The script the interpreter runs: imports the loop as a module, so its compiled form
/// (precompiled at start into `__pycache__`) is loaded instead of compiling it each time.
const PYTHON_BOOTSTRAP: &str = "import shoal_runtime\nshoal_runtime._run()\n";
const NODE_LOOP: &str = include_str!("../runtimes/node/bootstrap.mjs");

/// Every identifier in Lambda's `Runtime` enum; anything else is not a runtime at all.
const KNOWN: &[&str] = &[
    "nodejs",
    "nodejs4.3",
    "nodejs6.10",
    "nodejs8.10",
    "nodejs10.x",
    "nodejs12.x",
    "nodejs14.x",
    "nodejs16.x",
    "nodejs18.x",
    "nodejs20.x",
    "nodejs22.x",
    "nodejs24.x",
    "java8",
    "java8.al2",
    "java11",
    "java17",
    "java21",
    "java25",
    "python2.7",
    "python3.6",
    "python3.7",
    "python3.8",
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
    "dotnetcore1.0",
    "dotnetcore2.0",
    "dotnetcore2.1",
    "dotnetcore3.1",
    "dotnet6",
    "dotnet8",
    "dotnet10",
    "nodejs4.3-edge",
    "go1.x",
    "ruby2.5",
    "ruby2.7",
    "ruby3.2",
    "ruby3.3",
    "ruby3.4",
    "ruby4.0",
    "provided",
    "provided.al2",
    "provided.al2023",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Provided,
    Python,
    Node,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuntimeError {
    #[error(
        "Value {0} at 'runtime' failed to satisfy constraint: Member must be one of Lambda's runtime identifiers"
    )]
    Unknown(String),
    #[error(
        "The runtime parameter of {0} is not supported by this Shoal server. Supported: provided.al2023, provided.al2, python3.x, nodejsNN.x{1}"
    )]
    Unsupported(String, String),
}

/// An interpreter found on this host.
#[derive(Debug, Clone)]
pub struct Interpreter {
    pub path: PathBuf,
    /// `3.11`, `20.20.2`: what the interpreter reports.
    pub version: String,
}

/// What an environment of a given runtime executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// `LAMBDA_RUNTIME_DIR`.
    pub runtime_dir: PathBuf,
    /// `AWS_EXECUTION_ENV`, absent for custom runtimes (as on Lambda).
    pub execution_env: Option<String>,
}

/// Where to look for interpreters: `python3` / `node` by default, overridable per identifier.
#[derive(Debug, Clone, Default)]
pub struct InterpreterSettings {
    pub python: String,
    pub node: String,
    /// `python3.12` -> `/usr/bin/python3.12`, for hosts with several versions.
    pub overrides: HashMap<String, String>,
}

/// What runs the functions of one runtime on this host (`GET /shoal/v1/runtimes/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeReport {
    pub runtime: String,
    /// The interpreter's path (none for `provided` runtimes).
    pub interpreter: Option<String>,
    pub version: Option<String>,
    /// Whether the interpreter is of the runtime's version.
    pub matches: bool,
}

pub struct RuntimeCatalog {
    runtimes_dir: PathBuf,
    python: Option<Interpreter>,
    node: Option<Interpreter>,
    overrides: HashMap<String, Interpreter>,
}

fn family_of(runtime: &str) -> Result<Family, RuntimeError> {
    if !KNOWN.contains(&runtime) {
        return Err(RuntimeError::Unknown(runtime.to_string()));
    }
    if runtime.starts_with("provided") {
        Ok(Family::Provided)
    } else if runtime.starts_with("python3.") {
        Ok(Family::Python)
    } else if runtime.starts_with("nodejs") && runtime.ends_with(".x") {
        Ok(Family::Node)
    } else {
        Err(RuntimeError::Unsupported(
            runtime.to_string(),
            String::new(),
        ))
    }
}

/// Runs an interpreter once to learn its real path and version.
fn probe(program: &str, family: Family) -> Option<Interpreter> {
    let script: &[&str] = match family {
        Family::Python => &[
            "-c",
            "import sys;print(sys.executable);print('%d.%d'%sys.version_info[:2])",
        ],
        Family::Node => &[
            "-e",
            "console.log(process.execPath);console.log(process.versions.node)",
        ],
        Family::Provided => return None,
    };
    let output = Command::new(program).args(script).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let path = PathBuf::from(lines.next()?.trim());
    let version = lines.next()?.trim().to_string();
    path.is_absolute().then_some(Interpreter { path, version })
}

impl RuntimeCatalog {
    /// Resolves interpreters and writes the shipped runtime loops under `runtimes_dir`.
    pub fn prepare(runtimes_dir: &Path, settings: &InterpreterSettings) -> std::io::Result<Self> {
        let python_dir = runtimes_dir.join("python");
        let node_dir = runtimes_dir.join("node");
        std::fs::create_dir_all(&python_dir)?;
        std::fs::create_dir_all(&node_dir)?;
        write_if_changed(&python_dir.join("shoal_runtime.py"), PYTHON_LOOP)?;
        write_if_changed(&python_dir.join("bootstrap.py"), PYTHON_BOOTSTRAP)?;
        write_if_changed(&node_dir.join("bootstrap.mjs"), NODE_LOOP)?;

        let python = probe(&settings.python, Family::Python);
        let node = probe(&settings.node, Family::Node);
        match &python {
            Some(i) => {
                tracing::info!(path = %i.path.display(), version = %i.version, "python runtimes use this interpreter")
            }
            None => {
                tracing::warn!(program = %settings.python, "no python interpreter found: python3.x runtimes are unavailable")
            }
        }
        match &node {
            Some(i) => {
                tracing::info!(path = %i.path.display(), version = %i.version, "nodejs runtimes use this interpreter")
            }
            None => {
                tracing::warn!(program = %settings.node, "no node interpreter found: nodejs runtimes are unavailable")
            }
        }
        if let Some(interpreter) = &python {
            precompile(&interpreter.path, &python_dir.join("shoal_runtime.py"));
        }
        let mut overrides = HashMap::new();
        for (runtime, program) in &settings.overrides {
            let family = family_of(runtime).map_err(|e| std::io::Error::other(e.to_string()))?;
            match probe(program, family) {
                Some(interpreter) => {
                    if family == Family::Python {
                        precompile(&interpreter.path, &python_dir.join("shoal_runtime.py"));
                    }
                    overrides.insert(runtime.clone(), interpreter);
                }
                None => {
                    tracing::warn!(%runtime, %program, "configured interpreter does not run; ignoring it")
                }
            }
        }
        Ok(Self {
            runtimes_dir: runtimes_dir.to_path_buf(),
            python,
            node,
            overrides,
        })
    }

    fn interpreter(&self, runtime: &str, family: Family) -> Option<&Interpreter> {
        self.overrides.get(runtime).or(match family {
            Family::Python => self.python.as_ref(),
            Family::Node => self.node.as_ref(),
            Family::Provided => None,
        })
    }

    /// Checks that this host can serve `runtime`; warns when the interpreter's version differs.
    pub fn check(&self, runtime: &str) -> Result<Family, RuntimeError> {
        let family = family_of(runtime)?;
        if family == Family::Provided {
            return Ok(family);
        }
        let Some(interpreter) = self.interpreter(runtime, family) else {
            return Err(RuntimeError::Unsupported(
                runtime.to_string(),
                " (no interpreter for it was found on this host)".to_string(),
            ));
        };
        if !version_matches(runtime, family, &interpreter.version) {
            tracing::warn!(
                %runtime,
                interpreter = %interpreter.path.display(),
                version = %interpreter.version,
                "the interpreter's version differs from the runtime's"
            );
        }
        Ok(family)
    }

    /// What runs functions of `runtime` on this host: the interpreter and its version,
    /// and whether that version is the runtime's (`python3.12` on a host's 3.11 is not).
    pub fn report(&self, runtime: &str) -> Result<RuntimeReport, RuntimeError> {
        let family = self.check(runtime)?;
        let interpreter = self.interpreter(runtime, family);
        Ok(RuntimeReport {
            runtime: runtime.to_string(),
            interpreter: interpreter.map(|i| i.path.to_string_lossy().into_owned()),
            version: interpreter.map(|i| i.version.clone()),
            matches: interpreter.is_none_or(|i| version_matches(runtime, family, &i.version)),
        })
    }

    /// The program an environment of `runtime` runs, given the function's task root.
    /// The host folder holding the shipped runtime loops.
    pub fn runtimes_dir(&self) -> &Path {
        &self.runtimes_dir
    }

    /// Host folders an isolated environment needs to see for the interpreters to run
    /// (each interpreter's installation prefix).
    pub fn interpreter_roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = Vec::new();
        for interpreter in self
            .python
            .iter()
            .chain(self.node.iter())
            .chain(self.overrides.values())
        {
            let real = std::fs::canonicalize(&interpreter.path)
                .unwrap_or_else(|_| interpreter.path.clone());
            for path in [&interpreter.path, &real] {
                if let Some(prefix) = path.parent().and_then(Path::parent)
                    && prefix != Path::new("/")
                    && !roots.iter().any(|r| prefix.starts_with(r))
                {
                    roots.push(prefix.to_path_buf());
                }
            }
        }
        roots
    }

    /// The program an environment of `runtime` runs, given where the function sees its
    /// code (`task_root`) and the shipped runtime loops (`runtimes_root`).
    pub fn launch(
        &self,
        runtime: &str,
        task_root: &Path,
        runtimes_root: &Path,
    ) -> Result<Launch, RuntimeError> {
        let family = family_of(runtime)?;
        let missing = || RuntimeError::Unsupported(runtime.to_string(), String::new());
        Ok(match family {
            Family::Provided => Launch {
                program: task_root.join("bootstrap"),
                args: Vec::new(),
                runtime_dir: task_root.to_path_buf(),
                execution_env: None,
            },
            Family::Python => {
                let interpreter = self.interpreter(runtime, family).ok_or_else(missing)?;
                let dir = runtimes_root.join("python");
                Launch {
                    program: interpreter.path.clone(),
                    // -S: no `site` processing at start (it dominates cold start when the
                    // interpreter has many .pth files); the loop adds site-packages itself.
                    args: vec![
                        "-S".into(),
                        "-u".into(),
                        dir.join("bootstrap.py").to_string_lossy().into(),
                    ],
                    runtime_dir: dir,
                    execution_env: Some(format!("AWS_Lambda_{runtime}")),
                }
            }
            Family::Node => {
                let interpreter = self.interpreter(runtime, family).ok_or_else(missing)?;
                let dir = runtimes_root.join("node");
                Launch {
                    program: interpreter.path.clone(),
                    args: vec![dir.join("bootstrap.mjs").to_string_lossy().into()],
                    runtime_dir: dir,
                    execution_env: Some(format!("AWS_Lambda_{runtime}")),
                }
            }
        })
    }

    /// Folders holding the interpreters, put first on a function's `PATH`.
    pub fn interpreter_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .python
            .iter()
            .chain(self.node.iter())
            .chain(self.overrides.values())
            .filter_map(|i| i.path.parent().map(Path::to_path_buf))
            .collect();
        dirs.dedup();
        dirs
    }
}

fn version_matches(runtime: &str, family: Family, version: &str) -> bool {
    match family {
        Family::Python => runtime.strip_prefix("python") == Some(version),
        Family::Node => {
            let wanted = runtime.trim_start_matches("nodejs").trim_end_matches(".x");
            version.split('.').next() == Some(wanted)
        }
        Family::Provided => true,
    }
}

/// Compiles the Python runtime loop for one interpreter, so no environment pays for it.
fn precompile(interpreter: &Path, module: &Path) {
    let status = Command::new(interpreter)
        .args([
            "-S",
            "-c",
            "import py_compile,sys; py_compile.compile(sys.argv[1], doraise=True)",
        ])
        .arg(module)
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        tracing::warn!(interpreter = %interpreter.display(), "precompiling the Python runtime loop failed; environments will compile it at start");
    }
}

fn write_if_changed(path: &Path, contents: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(contents) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, contents)?;
        std::fs::rename(tmp, path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_identifiers() {
        assert_eq!(family_of("provided.al2023"), Ok(Family::Provided));
        assert_eq!(family_of("python3.12"), Ok(Family::Python));
        assert_eq!(family_of("nodejs20.x"), Ok(Family::Node));
        assert!(matches!(family_of("cobol1"), Err(RuntimeError::Unknown(_))));
        assert!(matches!(
            family_of("java21"),
            Err(RuntimeError::Unsupported(..))
        ));
        assert!(matches!(
            family_of("python2.7"),
            Err(RuntimeError::Unsupported(..))
        ));
    }

    #[test]
    fn version_comparison() {
        assert!(version_matches("python3.11", Family::Python, "3.11"));
        assert!(!version_matches("python3.12", Family::Python, "3.11"));
        assert!(version_matches("nodejs20.x", Family::Node, "20.20.2"));
        assert!(!version_matches("nodejs22.x", Family::Node, "20.20.2"));
    }
}
