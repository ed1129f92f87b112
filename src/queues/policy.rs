//! A queue's `Policy` as AddPermission and RemovePermission edit it: one statement per
//! label (`Sid`), allowing the listed accounts the listed actions on the queue. The
//! policy is kept and returned by GetQueueAttributes; this server does not enforce it.

use serde_json::{Value, json};

use super::QueueError;

/// The actions a permission may grant (`*` is all of them).
const ACTIONS: &[&str] = &[
    "*",
    "SendMessage",
    "ReceiveMessage",
    "DeleteMessage",
    "ChangeMessageVisibility",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "PurgeQueue",
    "ListQueueTags",
    "StartMessageMoveTask",
    "ListMessageMoveTasks",
    "CancelMessageMoveTask",
];

fn invalid(message: String) -> QueueError {
    QueueError::InvalidMessage(message)
}

fn check_label(label: &str) -> Result<(), QueueError> {
    if crate::function::is_plain_name(label, 80) {
        Ok(())
    } else {
        Err(invalid(format!(
            "Value {label} for parameter Label is invalid. Reason: Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length."
        )))
    }
}

fn statements(policy: Option<&str>) -> Vec<Value> {
    policy
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .and_then(|p| p["Statement"].as_array().cloned())
        .unwrap_or_default()
}

fn one_or_many(items: Vec<String>) -> Value {
    if items.len() == 1 {
        json!(items[0])
    } else {
        json!(items)
    }
}

/// The policy `policy` with a statement `label` added: `accounts` may do `actions` on the
/// queue `queue_arn`. A label already in use is refused.
pub fn add(
    policy: Option<&str>,
    queue_arn: &str,
    label: &str,
    accounts: &[String],
    actions: &[String],
) -> Result<String, QueueError> {
    check_label(label)?;
    if accounts.is_empty() {
        return Err(QueueError::MissingParameter(
            "The request must contain the parameter AWSAccountIds.".into(),
        ));
    }
    if let Some(bad) = accounts
        .iter()
        .find(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid(format!(
            "Value {bad} for parameter AWSAccountIds is invalid. Reason: An AWS account id is 12 digits."
        )));
    }
    if actions.is_empty() {
        return Err(QueueError::MissingParameter(
            "The request must contain the parameter Actions.".into(),
        ));
    }
    if let Some(bad) = actions.iter().find(|a| !ACTIONS.contains(&a.as_str())) {
        return Err(invalid(format!(
            "Value SQS:{bad} for parameter ActionName is invalid. Reason: Please refer to the appropriate WSDL for a list of valid actions."
        )));
    }
    let mut statements = statements(policy);
    if statements.iter().any(|s| s["Sid"] == label) {
        return Err(invalid(format!(
            "Value {label} for parameter Label is invalid. Reason: Already exists."
        )));
    }
    statements.push(json!({
        "Sid": label,
        "Effect": "Allow",
        "Principal": { "AWS": one_or_many(accounts.iter().map(|a| format!("arn:aws:iam::{a}:root")).collect()) },
        "Action": one_or_many(actions.iter().map(|a| format!("SQS:{a}")).collect()),
        "Resource": queue_arn,
    }));
    Ok(json!({
        "Version": "2012-10-17",
        "Id": format!("{queue_arn}/SQSDefaultPolicy"),
        "Statement": statements,
    })
    .to_string())
}

/// The policy `policy` without the statement `label` (`None`: nothing is left). A label
/// not in the policy is refused.
pub fn remove(policy: Option<&str>, label: &str) -> Result<Option<String>, QueueError> {
    let mut statements = statements(policy);
    let before = statements.len();
    statements.retain(|s| s["Sid"] != label);
    if statements.len() == before {
        return Err(invalid(format!(
            "Value {label} for parameter Label is invalid. Reason: can't find label."
        )));
    }
    if statements.is_empty() {
        return Ok(None);
    }
    let mut document: Value = policy
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_else(|| json!({ "Version": "2012-10-17" }));
    document["Statement"] = json!(statements);
    Ok(Some(document.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:sqs:us-east-1:000000000000:q";

    #[test]
    fn statements_are_added_by_label_and_removed() {
        let one = add(
            None,
            ARN,
            "l1",
            &["111111111111".into()],
            &["SendMessage".into()],
        )
        .unwrap();
        let doc: Value = serde_json::from_str(&one).unwrap();
        assert_eq!(
            doc["Statement"][0]["Principal"]["AWS"],
            "arn:aws:iam::111111111111:root"
        );
        assert_eq!(doc["Statement"][0]["Action"], "SQS:SendMessage");
        assert_eq!(doc["Statement"][0]["Resource"], ARN);
        let two = add(
            Some(&one),
            ARN,
            "l2",
            &["111111111111".into(), "222222222222".into()],
            &["*".into()],
        )
        .unwrap();
        assert!(
            add(
                Some(&two),
                ARN,
                "l1",
                &["111111111111".into()],
                &["*".into()]
            )
            .is_err()
        );
        assert!(add(None, ARN, "x", &["1".into()], &["*".into()]).is_err());
        assert!(add(None, ARN, "x", &["111111111111".into()], &["Fly".into()]).is_err());
        let left = remove(Some(&two), "l1").unwrap().unwrap();
        assert_eq!(statements(Some(&left)).len(), 1);
        assert!(remove(Some(&left), "l1").is_err());
        assert_eq!(remove(Some(&left), "l2").unwrap(), None);
    }
}
