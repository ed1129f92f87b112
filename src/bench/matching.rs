//! Pattern matching figures: events matched per second on one core against a bus's rules
//! compiled into one matcher ([`RuleSet`]), beside the same rules judged one by one (the
//! baseline), for several rule counts.
//!
//! The rules are the shapes buses carry: most name a `source` and a `detail-type`, some add
//! conditions on `detail` (exact values, numeric ranges, prefixes, `anything-but`), some
//! name only a `detail-type` and a prefix. Sources grow with the rule count (ten rules a
//! source), as they do when more services publish to a bus. Events are drawn from the
//! same sources and types, so each matches a few rules.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::pattern::{Pattern, RuleSet};

/// How long each figure is measured.
const MEASURE: Duration = Duration::from_millis(700);

pub fn run(rule_counts: &[usize]) {
    println!(
        "{:<28} {:>12} {:>14} {:>12} {:>10} {:>10}",
        "pattern matching (1 core)", "events/s", "baseline ev/s", "us/event", "judged", "matched"
    );
    for &count in rule_counts {
        let mut rng = fastrand::Rng::with_seed(count as u64);
        let sources = (count / 10).max(1);
        let patterns: Vec<Pattern> = (0..count)
            .map(|i| Pattern::from_value(&rule(&mut rng, i, sources)).expect("bench pattern"))
            .collect();
        let events: Vec<Value> = (0..4096).map(|_| event(&mut rng, sources)).collect();
        let built = Instant::now();
        let set = RuleSet::new(patterns.iter().cloned().map(|p| (p, ())));
        let build_ms = built.elapsed().as_secs_f64() * 1000.0;

        let (compiled_rate, matched) = rate(&events, |e| set.matching(e).len());
        let (linear_rate, linear_matched) = rate(&events, |e| {
            patterns.iter().filter(|p| p.matches(e)).count()
        });
        let judged: usize = events.iter().map(|e| set.judged(e)).sum();
        let label = format!("{count} rules (built {build_ms:.1} ms)");
        println!(
            "{:<28} {:>12.0} {:>14.0} {:>12.2} {:>10.1} {:>10.2}",
            label,
            compiled_rate,
            linear_rate,
            1e6 / compiled_rate,
            judged as f64 / events.len() as f64,
            matched,
        );
        debug_assert!((matched - linear_matched).abs() < 1e-9);
        if (matched - linear_matched).abs() > 1e-9 {
            println!(
                "  the compiled matcher disagrees with the baseline: {matched} vs {linear_matched} matches an event"
            );
        }
    }
    println!("  (judged: rules evaluated in full per event; matched: rules an event matched)");
}

/// Events per second through `f`, cycling over `events`, and the mean of what `f` returned.
fn rate(events: &[Value], mut f: impl FnMut(&Value) -> usize) -> (f64, f64) {
    let start = Instant::now();
    let mut done = 0usize;
    while start.elapsed() < MEASURE {
        for _ in 0..256 {
            black_box(f(black_box(&events[done % events.len()])));
            done += 1;
        }
    }
    let per_second = done as f64 / start.elapsed().as_secs_f64();
    let total: usize = events.iter().map(&mut f).sum();
    (per_second, total as f64 / events.len() as f64)
}

fn rule(rng: &mut fastrand::Rng, i: usize, sources: usize) -> Value {
    let source = format!("com.example.svc{}", i % sources);
    let detail_type = format!("Type{}", rng.usize(0..20));
    match rng.usize(0..10) {
        0..=5 => json!({ "source": [source], "detail-type": [detail_type] }),
        6 | 7 => {
            let status = ["created", "paid", "shipped"][rng.usize(0..3)];
            json!({
            "source": [source],
            "detail": {
                "status": [status],
                "amount": [{ "numeric": [">", rng.usize(0..1000), "<=", 1000 + rng.usize(0..1000)] }],
            },
            })
        }
        8 => json!({
            "detail-type": [detail_type],
            "source": [{ "prefix": format!("com.example.svc{}", rng.usize(0..sources)) }],
            "detail": { "region": [{ "prefix": "eu-" }] },
        }),
        _ => json!({
            "source": [source],
            "detail": { "user": { "tier": [{ "anything-but": ["free", "trial"] }] } },
        }),
    }
}

fn event(rng: &mut fastrand::Rng, sources: usize) -> Value {
    let status = ["created", "paid", "shipped", "cancelled"][rng.usize(0..4)];
    let region = ["eu-west-1", "us-east-1", "ap-south-1"][rng.usize(0..3)];
    let tier = ["free", "trial", "pro", "team"][rng.usize(0..4)];
    json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": format!("Type{}", rng.usize(0..20)),
        "source": format!("com.example.svc{}", rng.usize(0..sources)),
        "account": "000000000000",
        "time": "2026-12-04T06:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "status": status,
            "amount": rng.usize(0..2500),
            "region": region,
            "user": { "id": rng.u32(..), "tier": tier },
            "items": [{ "sku": "A-1", "qty": 2 }, { "sku": "B-7", "qty": 1 }],
        },
    })
}
