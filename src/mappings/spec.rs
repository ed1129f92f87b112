//! What a Create or UpdateEventSourceMapping asks for, checked against Lambda's limits for
//! Amazon SQS sources: batch size, batching window, response types, maximum concurrency
//! and filter criteria. Pure functions over typed values; the API layer parses the wire
//! into [`MappingInput`] and the service applies the checked result.

use super::{Mapping, MappingError};

/// Lambda's limits for queue sources.
pub const BATCH_SIZE_DEFAULT: u32 = 10;
pub const BATCH_SIZE_MAX: u32 = 10_000;
/// FIFO queues take batches of at most 10 and no batching window.
pub const FIFO_BATCH_SIZE_MAX: u32 = 10;
pub const WINDOW_MAX_S: u32 = 300;
pub const MAX_CONCURRENCY_MIN: u32 = 2;
pub const MAX_CONCURRENCY_MAX: u32 = 1000;
pub const FILTERS_MAX: usize = 5;
pub const PATTERN_MAX_CHARS: usize = 4096;
pub const REPORT_BATCH_ITEM_FAILURES: &str = "ReportBatchItemFailures";

/// The parameters of a create (function and source required) or an update (all
/// optional), as numbers and values the wire gave them.
#[derive(Debug, Clone, Default)]
pub struct MappingInput {
    /// The function's key and qualifier (already resolved to this account and region).
    pub function: Option<(String, Option<String>)>,
    pub source_arn: Option<String>,
    pub enabled: Option<bool>,
    pub batch_size: Option<i64>,
    pub batching_window_s: Option<i64>,
    pub filter_criteria: Option<serde_json::Value>,
    pub function_response_types: Option<Vec<String>>,
    /// `ScalingConfig` given: its `MaximumConcurrency` (`None` inside removes it).
    pub maximum_concurrency: Option<Option<i64>>,
    /// Parameters given that queue sources do not take (stream and Kafka settings).
    pub unsupported: Vec<&'static str>,
    /// `Tags` (create only).
    pub tags: Option<std::collections::BTreeMap<String, String>>,
}

/// A change to apply to a mapping, checked (see [`check`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MappingChange {
    pub function: Option<(String, Option<String>)>,
    pub enabled: Option<bool>,
    pub batch_size: Option<u32>,
    pub batching_window_s: Option<u32>,
    pub filter_criteria: Option<Option<serde_json::Value>>,
    pub report_batch_item_failures: Option<bool>,
    pub maximum_concurrency: Option<Option<u32>>,
}

fn constraint(value: i64, member: &str, rule: &str) -> MappingError {
    MappingError::Invalid(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must have value {rule}"
    ))
}

fn in_range(value: i64, member: &str, min: u32, max: u32) -> Result<u32, MappingError> {
    if value < i64::from(min) {
        return Err(constraint(
            value,
            member,
            &format!("greater than or equal to {min}"),
        ));
    }
    if value > i64::from(max) {
        return Err(constraint(
            value,
            member,
            &format!("less than or equal to {max}"),
        ));
    }
    Ok(value as u32)
}

/// Checks the parameters of `input` one by one (ranges and shapes).
pub fn check(input: MappingInput) -> Result<MappingChange, MappingError> {
    if let Some(name) = input.unsupported.first() {
        return Err(MappingError::Invalid(format!(
            "Unsupported {name} parameter for an Amazon SQS event source."
        )));
    }
    let batch_size = input
        .batch_size
        .map(|v| in_range(v, "batchSize", 1, BATCH_SIZE_MAX))
        .transpose()?;
    let batching_window_s = input
        .batching_window_s
        .map(|v| in_range(v, "maximumBatchingWindowInSeconds", 0, WINDOW_MAX_S))
        .transpose()?;
    let report_batch_item_failures = match input.function_response_types {
        None => None,
        Some(types) if types.is_empty() => Some(false),
        Some(types) if types.len() == 1 && types[0] == REPORT_BATCH_ITEM_FAILURES => Some(true),
        Some(types) if types.len() > 1 => {
            return Err(MappingError::Invalid(
                "1 validation error detected: Value at 'functionResponseTypes' failed to satisfy constraint: Member must have length less than or equal to 1".into(),
            ));
        }
        Some(types) => {
            return Err(MappingError::Invalid(format!(
                "1 validation error detected: Value '[{}]' at 'functionResponseTypes' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [{REPORT_BATCH_ITEM_FAILURES}]]",
                types.join(", ")
            )));
        }
    };
    let maximum_concurrency = input
        .maximum_concurrency
        .map(|inner| {
            inner
                .map(|v| {
                    in_range(
                        v,
                        "scalingConfig.maximumConcurrency",
                        MAX_CONCURRENCY_MIN,
                        MAX_CONCURRENCY_MAX,
                    )
                })
                .transpose()
        })
        .transpose()?;
    let filter_criteria = input
        .filter_criteria
        .map(|criteria| check_filter_criteria(&criteria).map(|()| criteria))
        .transpose()?
        .map(|criteria| {
            // `{}` and `{"Filters": []}` remove the criteria.
            let empty = criteria
                .get("Filters")
                .and_then(|f| f.as_array())
                .is_none_or(|f| f.is_empty());
            (!empty).then_some(criteria)
        });
    Ok(MappingChange {
        function: input.function,
        enabled: input.enabled,
        batch_size,
        batching_window_s,
        filter_criteria,
        report_batch_item_failures,
        maximum_concurrency,
    })
}

/// `FilterCriteria`: `{"Filters": [{"Pattern": "<JSON text>"}, ...]}`, at most five
/// patterns of at most 4,096 characters, each a valid filter pattern.
pub fn check_filter_criteria(criteria: &serde_json::Value) -> Result<(), MappingError> {
    let invalid =
        |why: &str| MappingError::Invalid(format!("Invalid filter pattern definition. {why}"));
    let Some(object) = criteria.as_object() else {
        return Err(invalid("FilterCriteria must be an object."));
    };
    let Some(filters) = object.get("Filters") else {
        return Ok(());
    };
    let Some(filters) = filters.as_array() else {
        return Err(invalid("Filters must be a list."));
    };
    if filters.len() > FILTERS_MAX {
        return Err(MappingError::Invalid(format!(
            "1 validation error detected: Value at 'filterCriteria.filters' failed to satisfy constraint: Member must have length less than or equal to {FILTERS_MAX}"
        )));
    }
    for filter in filters {
        let Some(pattern) = filter.get("Pattern").and_then(|p| p.as_str()) else {
            return Err(invalid("Each filter must have a Pattern string."));
        };
        if pattern.chars().count() > PATTERN_MAX_CHARS {
            return Err(MappingError::Invalid(format!(
                "1 validation error detected: Value at 'filterCriteria.filters.member.pattern' failed to satisfy constraint: Member must have length less than or equal to {PATTERN_MAX_CHARS}"
            )));
        }
    }
    crate::pattern::FilterCriteria::parse(criteria).map_err(|e| invalid(&e.to_string()))?;
    Ok(())
}

/// Checks what holds only for the whole mapping once `change` is applied to it: a batch
/// over 10 needs a batching window; FIFO queues take batches of at most 10 and no window.
pub fn check_whole(mapping: &Mapping, fifo: bool) -> Result<(), MappingError> {
    if fifo {
        if mapping.batch_size > FIFO_BATCH_SIZE_MAX {
            return Err(MappingError::Invalid(format!(
                "BatchSize must be between 1 and {FIFO_BATCH_SIZE_MAX} for FIFO queues."
            )));
        }
        if mapping.batching_window_s > 0 {
            return Err(MappingError::Invalid(
                "Batching window is not supported for FIFO queues.".into(),
            ));
        }
    } else if mapping.batch_size > 10 && mapping.batching_window_s == 0 {
        return Err(MappingError::Invalid(
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10".into(),
        ));
    }
    Ok(())
}

/// Applies a checked change to `mapping`.
pub fn apply(mapping: &mut Mapping, change: MappingChange) {
    if let Some((function, qualifier)) = change.function {
        mapping.function = function;
        mapping.qualifier = qualifier;
    }
    if let Some(enabled) = change.enabled {
        mapping.enabled = enabled;
    }
    if let Some(v) = change.batch_size {
        mapping.batch_size = v;
    }
    if let Some(v) = change.batching_window_s {
        mapping.batching_window_s = v;
    }
    if let Some(v) = change.filter_criteria {
        mapping.filter_criteria = v;
    }
    if let Some(v) = change.report_batch_item_failures {
        mapping.report_batch_item_failures = v;
    }
    if let Some(v) = change.maximum_concurrency {
        mapping.maximum_concurrency = v;
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn sample(uuid: &str) -> Mapping {
        Mapping::new(
            uuid.into(),
            ("f".into(), None),
            ("arn:aws:sqs:us-east-1:000000000000:q".into(), "q".into()),
            "us-east-1".into(),
        )
    }

    fn error_of(input: MappingInput) -> String {
        check(input).unwrap_err().to_string()
    }

    #[test]
    fn ranges_follow_lambda() {
        let e = error_of(MappingInput {
            batch_size: Some(0),
            ..Default::default()
        });
        assert!(
            e.contains("'batchSize'") && e.contains("greater than or equal to 1"),
            "{e}"
        );
        let e = error_of(MappingInput {
            batch_size: Some(10_001),
            ..Default::default()
        });
        assert!(e.contains("less than or equal to 10000"), "{e}");
        let e = error_of(MappingInput {
            batching_window_s: Some(301),
            ..Default::default()
        });
        assert!(e.contains("maximumBatchingWindowInSeconds"), "{e}");
        let e = error_of(MappingInput {
            maximum_concurrency: Some(Some(1)),
            ..Default::default()
        });
        assert!(e.contains("scalingConfig.maximumConcurrency"), "{e}");
        let e = error_of(MappingInput {
            function_response_types: Some(vec!["Everything".into()]),
            ..Default::default()
        });
        assert!(e.contains("ReportBatchItemFailures"), "{e}");
        let e = error_of(MappingInput {
            unsupported: vec!["StartingPosition"],
            ..Default::default()
        });
        assert!(e.contains("StartingPosition"), "{e}");
        let change = check(MappingInput {
            batch_size: Some(100),
            batching_window_s: Some(1),
            function_response_types: Some(vec![REPORT_BATCH_ITEM_FAILURES.into()]),
            maximum_concurrency: Some(Some(5)),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(change.batch_size, Some(100));
        assert_eq!(change.report_batch_item_failures, Some(true));
        assert_eq!(change.maximum_concurrency, Some(Some(5)));
    }

    #[test]
    fn a_batch_over_ten_needs_a_window_and_fifo_queues_take_ten_at_most() {
        let mut mapping = sample("u");
        mapping.batch_size = 100;
        assert!(check_whole(&mapping, false).is_err());
        mapping.batching_window_s = 1;
        assert!(check_whole(&mapping, false).is_ok());
        assert!(check_whole(&mapping, true).is_err());
        mapping.batch_size = 10;
        mapping.batching_window_s = 0;
        assert!(check_whole(&mapping, true).is_ok());
    }

    #[test]
    fn filter_criteria_are_checked_and_empty_ones_removed() {
        let criteria = |patterns: &[&str]| serde_json::json!({"Filters": patterns.iter().map(|p| serde_json::json!({"Pattern": p})).collect::<Vec<_>>()});
        let ok = criteria(&[r#"{"body": {"kind": ["order"]}}"#]);
        assert!(check_filter_criteria(&ok).is_ok());
        let bad = criteria(&[r#"{"body": {"kind": "order"}}"#]);
        let e = check_filter_criteria(&bad).unwrap_err().to_string();
        assert!(e.starts_with("Invalid filter pattern definition."), "{e}");
        let six = criteria(&[r#"{"a": [1]}"#; 6]);
        assert!(check_filter_criteria(&six).is_err());
        let change = check(MappingInput {
            filter_criteria: Some(serde_json::json!({"Filters": []})),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(change.filter_criteria, Some(None));
    }
}
