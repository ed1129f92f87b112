//! Platform metrics in the Prometheus text format, served at `GET /metrics`.
//!
//! Counters are kept here (incremented by the invoke path and the scheduler); gauges are
//! read from the scheduler when scraped. Every metric name is listed in [`names`] and
//! documented in `docs/metrics.md`: names are part of the API.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// The metric names, in one place.
pub mod names {
    pub const INVOCATIONS: &str = "shoal_invocations_total";
    pub const ERRORS: &str = "shoal_invocation_errors_total";
    pub const THROTTLES: &str = "shoal_throttles_total";
    pub const COLD_STARTS: &str = "shoal_cold_starts_total";
    pub const EVICTIONS: &str = "shoal_environment_evictions_total";
    pub const REAPED: &str = "shoal_environments_reaped_total";
    pub const CONCURRENT: &str = "shoal_concurrent_executions";
    pub const ACCOUNT_CONCURRENT: &str = "shoal_account_concurrent_executions";
    pub const ENVIRONMENTS: &str = "shoal_environments";
    pub const MEMORY_USED: &str = "shoal_environment_memory_mb";
    pub const ASYNC_RECEIVED: &str = "shoal_async_events_received_total";
    pub const ASYNC_DROPPED: &str = "shoal_async_events_dropped_total";
    pub const DESTINATION_FAILURES: &str = "shoal_destination_delivery_failures_total";
    pub const ASYNC_DEPTH: &str = "shoal_async_queue_depth";
    pub const DEAD_LETTER_ERRORS: &str = "shoal_dead_letter_errors_total";
    pub const ASYNC_AGE: &str = "shoal_async_oldest_event_age_ms";
    pub const TOPIC_PUBLISHED: &str = "shoal_topic_messages_published_total";
    pub const TOPIC_DELIVERIES: &str = "shoal_topic_deliveries_total";
}

const HELP: &[(&str, &str, &str)] = &[
    (
        names::TOPIC_PUBLISHED,
        "counter",
        "Messages published to topics (committed; duplicates of FIFO topics excluded).",
    ),
    (
        names::TOPIC_DELIVERIES,
        "counter",
        "Delivery attempts of topic messages, by subscription protocol and outcome.",
    ),
    (
        names::INVOCATIONS,
        "counter",
        "Invocations that ran (throttled ones excluded).",
    ),
    (
        names::ERRORS,
        "counter",
        "Invocations that ended in a function error, timeout or crash.",
    ),
    (
        names::THROTTLES,
        "counter",
        "Invocations refused by a concurrency or capacity limit.",
    ),
    (
        names::COLD_STARTS,
        "counter",
        "Invocations that started a new environment.",
    ),
    (
        names::EVICTIONS,
        "counter",
        "Idle environments shut down to make room for another.",
    ),
    (
        names::REAPED,
        "counter",
        "Idle environments shut down after the keep-alive.",
    ),
    (
        names::CONCURRENT,
        "gauge",
        "Invocations in flight, per function.",
    ),
    (
        names::ACCOUNT_CONCURRENT,
        "gauge",
        "Invocations in flight, all functions.",
    ),
    (
        names::ENVIRONMENTS,
        "gauge",
        "Live environments per function and state.",
    ),
    (
        names::MEMORY_USED,
        "gauge",
        "Sum of the memory sizes of live environments.",
    ),
    (
        names::ASYNC_RECEIVED,
        "counter",
        "Asynchronous events accepted (committed) for later invocation.",
    ),
    (
        names::ASYNC_DROPPED,
        "counter",
        "Asynchronous events that ended without success, by reason.",
    ),
    (
        names::DESTINATION_FAILURES,
        "counter",
        "Execution records that could not be delivered to their destination.",
    ),
    (
        names::DEAD_LETTER_ERRORS,
        "counter",
        "Failed events that could not be sent to their dead-letter queue.",
    ),
    (
        names::ASYNC_DEPTH,
        "gauge",
        "Asynchronous events waiting, per function.",
    ),
    (
        names::ASYNC_AGE,
        "gauge",
        "Age in ms of the oldest waiting asynchronous event, per function.",
    ),
];

type Key = (&'static str, Vec<(&'static str, String)>);

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, u64>>,
}

/// A sample of a gauge, supplied at scrape time.
pub struct Gauge {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: u64,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn write_sample(out: &mut String, name: &str, labels: &[(&'static str, String)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

impl Metrics {
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        );
        *self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += by;
    }

    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.add(name, labels, 1);
    }

    /// The whole exposition: counters and the given gauges, grouped by metric.
    pub fn render(&self, gauges: Vec<Gauge>) -> String {
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let mut any = false;
            for ((counter, labels), value) in &counters {
                if counter == name {
                    write_sample(&mut out, name, labels, *value);
                    any = true;
                }
            }
            for gauge in gauges.iter().filter(|g| g.name == *name) {
                write_sample(&mut out, name, &gauge.labels, gauge.value);
                any = true;
            }
            if !any && labels_free(name) {
                write_sample(&mut out, name, &[], 0);
            }
        }
        out
    }
}

/// Metrics without labels are always shown, at zero when nothing happened yet.
fn labels_free(name: &str) -> bool {
    matches!(
        name,
        names::EVICTIONS
            | names::REAPED
            | names::ACCOUNT_CONCURRENT
            | names::MEMORY_USED
            | names::ASYNC_RECEIVED
            | names::DESTINATION_FAILURES
            | names::DEAD_LETTER_ERRORS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        metrics.inc(names::INVOCATIONS, &[("function", "f")]);
        metrics.inc(names::INVOCATIONS, &[("function", "f")]);
        metrics.inc(names::THROTTLES, &[("function", "f"), ("reason", "X")]);
        let text = metrics.render(vec![Gauge {
            name: names::ENVIRONMENTS,
            labels: vec![("function", "f".into()), ("state", "idle".into())],
            value: 3,
        }]);
        assert!(text.contains("shoal_invocations_total{function=\"f\"} 2\n"));
        assert!(text.contains("shoal_throttles_total{function=\"f\",reason=\"X\"} 1\n"));
        assert!(text.contains("shoal_environments{function=\"f\",state=\"idle\"} 3\n"));
        assert!(text.contains("shoal_environment_evictions_total 0\n"));
        assert!(text.contains("# TYPE shoal_concurrent_executions gauge\n"));
        assert!(text.contains("shoal_async_events_received_total 0\n"));
    }
}
