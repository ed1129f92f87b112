//! `shoal logs`: a function's log lines, filtered by time, text and request, the last N,
//! followed from now, with timestamps or as JSON lines for scripts.
//!
//! Reads the logs endpoint page by page and filters here (`--filter` with CloudWatch's
//! filter patterns, `filter_pattern.rs`). A request's lines are those of its log stream
//! from its `START RequestId: ID` line to its `REPORT RequestId: ID` line, or from its
//! `platform.start` to its `platform.report` event in JSON logs (an environment runs one
//! request at a time).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use super::Endpoint;
use super::client::Client;
use super::filter_pattern::Pattern as FilterPattern;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The function's name.
    pub name: String,
    /// Keep printing new lines as they arrive (from now, unless --since says otherwise).
    #[arg(long, short)]
    pub follow: bool,
    /// Only lines from this long ago (`10m`, `2h`) or since this UTC time
    /// (`2026-12-01T10:00Z`, `2026-12-01T10:00:00Z`).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only lines matching this CloudWatch Logs filter pattern: terms (`ERROR timeout`,
    /// `"a phrase"`, `?ERROR ?WARN`, `-DEBUG`) or, for JSON lines, `{ $.level = "ERROR" }`,
    /// `{ $.ms > 100 && $.path = "/api/*" }`.
    #[arg(long, value_name = "PATTERN")]
    pub filter: Option<String>,
    /// Only the lines of this request (from its START to its REPORT line).
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
    /// Only the last N lines (then follow, with --follow).
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<usize>,
    /// Print each line's time (UTC, milliseconds) before it.
    #[arg(long, short)]
    pub timestamps: bool,
    /// `text`, or `json`: one JSON object a line (`timestamp` in epoch milliseconds, `time`,
    /// `logStream`, `message`).
    #[arg(long, short, value_parser = ["text", "json"], default_value = "text")]
    pub output: String,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

/// Epoch milliseconds `since` names, relative to `now_ms`.
fn since_ms(since: &str, now_ms: u64) -> anyhow::Result<u64> {
    if let Ok(ago) = humantime::parse_duration(since) {
        return Ok(now_ms.saturating_sub(ago.as_millis() as u64));
    }
    let full = match since.len() {
        // 2026-12-01T10:00Z
        17 if since.ends_with('Z') => format!("{}:00Z", &since[..16]),
        // 2026-12-01
        10 => format!("{since}T00:00:00Z"),
        _ => since.to_string(),
    };
    crate::timefmt::parse_iso(&full).with_context(|| {
        format!("--since {since}: expected a duration (10m, 2h) or a UTC time (2026-12-01T10:00Z)")
    })
}

/// Which lines pass the filters, remembering which streams are inside the wanted request.
struct Filter<'a> {
    since_ms: u64,
    pattern: FilterPattern,
    request_id: Option<&'a str>,
    /// Streams between the wanted request's START and REPORT lines.
    inside: HashMap<String, bool>,
}

/// Whether `message` is the platform's `word` line (text, `START RequestId: ID ...`) or
/// `kind` event (`LogFormat: JSON`, `{"type": kind, "record": {"requestId": ID}}`) of
/// request `id`.
fn platform_line(message: &str, word: &str, kind: &str, id: &str) -> bool {
    if let Some(rest) = message
        .strip_prefix(word)
        .and_then(|m| m.strip_prefix(" RequestId: "))
    {
        return rest.starts_with(id);
    }
    if !message.starts_with('{') || !message.contains(kind) {
        return false;
    }
    serde_json::from_str::<Value>(message)
        .is_ok_and(|event| event["type"] == kind && event["record"]["requestId"] == id)
}

impl Filter<'_> {
    fn keeps(&mut self, event: &Value) -> bool {
        let message = event["message"].as_str().unwrap_or_default();
        if let Some(id) = self.request_id {
            let stream = event["logStream"].as_str().unwrap_or_default().to_string();
            let starts = platform_line(message, "START", "platform.start", id);
            let reports = platform_line(message, "REPORT", "platform.report", id);
            let inside = self.inside.entry(stream).or_default();
            if starts {
                *inside = true;
            }
            let keep = *inside;
            if reports {
                *inside = false;
            }
            if !keep {
                return false;
            }
        }
        event["timestamp"].as_u64().unwrap_or(0) >= self.since_ms && self.pattern.matches(message)
    }
}

fn print(event: &Value, args: &LogsArgs) {
    // Runtimes join the lines of one record with '\r' (Lambda's format).
    let message = event["message"].as_str().unwrap_or_default();
    let timestamp = event["timestamp"].as_u64().unwrap_or(0);
    if args.output == "json" {
        say!(
            "{}",
            json!({
                "timestamp": timestamp,
                "time": crate::timefmt::iso_timestamp(timestamp),
                "logStream": event["logStream"],
                "message": message,
            })
        );
    } else if args.timestamps {
        say!(
            "{} {}",
            crate::timefmt::iso_timestamp(timestamp),
            message.replace('\r', "\n")
        );
    } else {
        say!("{}", message.replace('\r', "\n"));
    }
}

/// A page of events after `after`, and where the next starts.
async fn page(client: &Client, name: &str, after: u64) -> anyhow::Result<(Vec<Value>, u64)> {
    let page = client
        .get_json(&format!(
            "/shoal/v1/functions/{name}/logs?after={after}&limit=1000"
        ))
        .await?;
    let events = page["events"].as_array().cloned().unwrap_or_default();
    Ok((events, page["nextAfter"].as_u64().unwrap_or(after)))
}

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let client = args.endpoint.client();
    let now = crate::timefmt::now_ms();
    let since = args
        .since
        .as_deref()
        .map(|s| since_ms(s, now))
        .transpose()?;
    let mut filter = Filter {
        since_ms: since.unwrap_or(0),
        pattern: FilterPattern::parse(args.filter.as_deref().unwrap_or(""))
            .map_err(|e| anyhow::anyhow!("--filter: {e}"))?,
        request_id: args.request_id.as_deref(),
        inside: HashMap::new(),
    };
    // Following without --since (and without -n) starts from now: nothing old is printed.
    let from_now = args.follow && since.is_none() && args.lines.is_none();
    let mut after = 0u64;
    let mut last: VecDeque<Value> = VecDeque::new();
    loop {
        let (events, next) = page(&client, &args.name, after).await?;
        after = next;
        for event in &events {
            if !filter.keeps(event) || from_now {
                continue;
            }
            match args.lines {
                Some(n) => {
                    last.push_back(event.clone());
                    if last.len() > n {
                        last.pop_front();
                    }
                }
                None => print(event, &args),
            }
        }
        if events.len() < 1000 {
            break;
        }
    }
    for event in last.drain(..) {
        print(&event, &args);
    }
    if !args.follow {
        return Ok(());
    }
    loop {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_millis(500)).await;
        loop {
            let (events, next) = page(&client, &args.name, after).await?;
            after = next;
            for event in events.iter().filter(|e| filter.keeps(e)) {
                print(event, &args);
            }
            if events.len() < 1000 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        let now = crate::timefmt::parse_iso("2026-12-04T10:00:00Z").unwrap();
        assert_eq!(since_ms("10m", now).unwrap(), now - 600_000);
        assert_eq!(
            since_ms("2026-12-01T10:00Z", now).unwrap(),
            crate::timefmt::parse_iso("2026-12-01T10:00:00Z").unwrap()
        );
        assert_eq!(
            since_ms("2026-12-01", now).unwrap(),
            crate::timefmt::parse_iso("2026-12-01T00:00:00Z").unwrap()
        );
        assert!(since_ms("yesterday", now).is_err());
    }

    #[test]
    fn platform_lines_are_known_in_text_and_json() {
        assert!(platform_line(
            "START RequestId: r2 Version: 1",
            "START",
            "platform.start",
            "r2"
        ));
        let json_start =
            r#"{"time":"t","type":"platform.start","record":{"requestId":"r2","version":"1"}}"#;
        assert!(platform_line(json_start, "START", "platform.start", "r2"));
        assert!(!platform_line(json_start, "START", "platform.start", "r1"));
        assert!(!platform_line(
            json_start,
            "REPORT",
            "platform.report",
            "r2"
        ));
        assert!(!platform_line(
            r#"{"message":"platform.start"}"#,
            "START",
            "platform.start",
            "r2"
        ));
    }

    #[test]
    fn a_request_is_its_lines_from_start_to_report_on_its_stream() {
        let mut filter = Filter {
            since_ms: 0,
            pattern: FilterPattern::All,
            request_id: Some("r2"),
            inside: HashMap::new(),
        };
        let line = |stream: &str, message: &str| json!({"logStream": stream, "message": message, "timestamp": 1});
        let lines = [
            line("a", "START RequestId: r1 Version: $LATEST"),
            line("b", "START RequestId: r2 Version: $LATEST"),
            line("a", "one"),
            line("b", "two"),
            line("b", "END RequestId: r2"),
            line("b", "REPORT RequestId: r2\tDuration: 1 ms"),
            line("b", "later"),
        ];
        let kept: Vec<&str> = lines
            .iter()
            .filter(|l| filter.keeps(l))
            .map(|l| l["message"].as_str().unwrap())
            .collect();
        assert_eq!(
            kept,
            [
                "START RequestId: r2 Version: $LATEST",
                "two",
                "END RequestId: r2",
                "REPORT RequestId: r2\tDuration: 1 ms"
            ]
        );
    }
}
