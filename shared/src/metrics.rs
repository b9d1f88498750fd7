//! CloudWatch Embedded Metric Format: a metric is one JSON line on stdout,
//! which Lambda ships to CloudWatch Logs and CloudWatch turns into a metric,
//! with no agent and no extra request.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

pub const NAMESPACE: &str = "Credits";

static DISCARDED: AtomicBool = AtomicBool::new(false);

/// Drops this process's metric lines from here on. For the bench and the
/// operator commands, which run the ledger in-process and print their
/// figures or answers on the same stdout; nothing on Lambda calls it.
pub fn discard() {
    DISCARDED.store(true, Ordering::Relaxed);
}

/// Counts `value` occurrences of `name` (e.g. `LateSuccess`).
pub fn count(name: &str, value: u64) {
    emit(emf_line(name, value, "Count", chrono::Utc::now().timestamp_millis()));
}

/// A request's latency, in milliseconds.
pub fn latency(milliseconds: u64) {
    emit(emf_line("Latency", milliseconds, "Milliseconds", chrono::Utc::now().timestamp_millis()));
}

fn emit(line: String) {
    if !DISCARDED.load(Ordering::Relaxed) {
        println!("{line}");
    }
}

fn emf_line(name: &str, value: u64, unit: &str, timestamp_ms: i64) -> String {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"]],
                "Metrics": [{"Name": name, "Unit": unit}],
            }],
        },
        "Service": "credits",
        name: value,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn emf_line_names_the_metric_and_its_value() {
        let line: serde_json::Value =
            serde_json::from_str(&super::emf_line("LateSuccess", 1, "Count", 5)).expect("json");
        assert_eq!(line["LateSuccess"], 1);
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "LateSuccess");
        assert_eq!(line["_aws"]["Timestamp"], 5);
    }
}
