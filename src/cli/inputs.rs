//! What the CLI reads besides its flags: an event given as `@file` or `-` (standard
//! input), as the AWS CLI and cargo-lambda take it; dotenv files for `--env-file`; and
//! the handler a managed runtime gets when `--handler` is not given.

use std::io::Read;
use std::path::Path;

use anyhow::Context;

/// The event `--payload` names: `@path` is the file's content, `-` standard input,
/// anything else the text itself.
pub fn payload(raw: &str) -> anyhow::Result<Vec<u8>> {
    if raw == "-" {
        let mut out = Vec::new();
        std::io::stdin()
            .read_to_end(&mut out)
            .context("reading the payload from standard input")?;
        return Ok(out);
    }
    if let Some(path) = raw.strip_prefix('@') {
        return std::fs::read(path).with_context(|| format!("reading the payload from {path}"));
    }
    Ok(raw.as_bytes().to_vec())
}

/// The variables of a dotenv file: `KEY=VALUE` lines, `export KEY=VALUE` too; blank lines
/// and `#` comments skipped; a value in single quotes taken as written, in double quotes
/// with `\n`, `\"` and `\\` unescaped, bare values trimmed and cut at ` #`.
pub fn dotenv(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --env-file {}", path.display()))?;
    parse_dotenv(&text).with_context(|| format!("--env-file {}", path.display()))
}

fn parse_dotenv(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let (key, value) = line
            .split_once('=')
            .with_context(|| format!("line {}: expected KEY=VALUE", n + 1))?;
        let key = key.trim();
        if key.is_empty()
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || key.as_bytes()[0].is_ascii_digit()
        {
            anyhow::bail!("line {}: {key:?} is not a variable name", n + 1);
        }
        let value = value.trim();
        let value = if let Some(inner) = value.strip_prefix('\'') {
            inner
                .strip_suffix('\'')
                .with_context(|| format!("line {}: unclosed single quote", n + 1))?
                .to_string()
        } else if let Some(inner) = value.strip_prefix('"') {
            let inner = inner
                .strip_suffix('"')
                .with_context(|| format!("line {}: unclosed double quote", n + 1))?;
            unescape(inner)
        } else {
            value
                .split(" #")
                .next()
                .unwrap_or("")
                .trim_end()
                .to_string()
        };
        out.push((key.to_string(), value));
    }
    Ok(out)
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The handler a function of `runtime` gets when none is given: `app.handler` for
/// Python, `index.handler` for Node.js, `bootstrap` for the OS-only runtimes; other
/// runtimes name their handler themselves.
pub fn default_handler(runtime: &str) -> anyhow::Result<&'static str> {
    if runtime.starts_with("python") {
        Ok("app.handler")
    } else if runtime.starts_with("nodejs") {
        Ok("index.handler")
    } else if runtime.starts_with("provided") {
        Ok("bootstrap")
    } else {
        anyhow::bail!("give the handler of a {runtime} function with --handler")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_files() {
        let vars = parse_dotenv(
            "# settings\nA=1\nexport B = two words \nC='single # kept'\nD=\"line\\nnext \\\"q\\\"\"\nE=bare # comment\n\nF=\n",
        )
        .unwrap();
        assert_eq!(
            vars,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "single # kept".into()),
                ("D".into(), "line\nnext \"q\"".into()),
                ("E".into(), "bare".into()),
                ("F".into(), "".into()),
            ]
        );
        assert!(parse_dotenv("NOEQUALS").is_err());
        assert!(parse_dotenv("1X=2").is_err());
        assert!(parse_dotenv("X='open").is_err());
    }

    #[test]
    fn payloads_and_handlers() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("event.json");
        std::fs::write(&file, b"{\"from\":\"file\"}").unwrap();
        assert_eq!(
            payload(&format!("@{}", file.display())).unwrap(),
            b"{\"from\":\"file\"}"
        );
        assert_eq!(payload("{\"a\":1}").unwrap(), b"{\"a\":1}");
        assert!(payload("@/no/such/file").is_err());
        assert_eq!(default_handler("python3.12").unwrap(), "app.handler");
        assert_eq!(default_handler("nodejs20.x").unwrap(), "index.handler");
        assert_eq!(default_handler("provided.al2023").unwrap(), "bootstrap");
        assert!(default_handler("java21").is_err());
    }
}
