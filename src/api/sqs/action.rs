//! The SQS actions this server serves, parsed from `X-Amz-Target: AmazonSQS.<Action>`.

use super::error::SqsError;
use crate::api::fronts::{target_action, wire_actions};

/// The `X-Amz-Target` prefix of the SQS JSON protocol.
pub(in crate::api) const TARGET_PREFIX: &str = "AmazonSQS";

wire_actions! {
    /// One SQS action, named as on the wire.
    pub(super) enum SqsAction {
        CreateQueue,
        GetQueueUrl,
        ListQueues,
        DeleteQueue,
        PurgeQueue,
        GetQueueAttributes,
        SetQueueAttributes,
        SendMessage,
        SendMessageBatch,
        ReceiveMessage,
        DeleteMessage,
        DeleteMessageBatch,
        ChangeMessageVisibility,
        ChangeMessageVisibilityBatch,
        ListDeadLetterSourceQueues,
        AddPermission,
        RemovePermission,
        TagQueue,
        UntagQueue,
        ListQueueTags,
        StartMessageMoveTask,
        ListMessageMoveTasks,
        CancelMessageMoveTask,
    }
}

impl SqsAction {
    /// The action an `X-Amz-Target` names; SQS's `UnsupportedOperation` for any other
    /// target (an unknown action, or another service's prefix).
    pub fn from_target(target: &str) -> Result<Self, SqsError> {
        target_action(target, TARGET_PREFIX)
            .and_then(Self::from_name)
            .ok_or_else(|| {
                SqsError::unsupported(target_action(target, TARGET_PREFIX).unwrap_or(target))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_parses_from_its_target() {
        assert_eq!(SqsAction::ALL.len(), 23);
        for &action in SqsAction::ALL {
            let target = format!("AmazonSQS.{}", action.name());
            assert_eq!(SqsAction::from_target(&target).unwrap(), action);
            assert_eq!(SqsAction::from_name(action.name()), Some(action));
        }
        assert_eq!(
            SqsAction::from_target("AmazonSQS.ReceiveMessage").unwrap(),
            SqsAction::ReceiveMessage
        );
    }

    #[test]
    fn unknown_actions_are_unsupported_operations() {
        for (target, named) in [
            ("AmazonSQS.StartMessageMoveTasks", "StartMessageMoveTasks"),
            ("AmazonSQS.listqueues", "listqueues"),
            ("AmazonSQS.", ""),
        ] {
            let e = SqsAction::from_target(target).unwrap_err();
            assert_eq!(e.code, "AWS.SimpleQueueService.UnsupportedOperation");
            assert_eq!(
                e.message,
                format!("The action {named} is not supported by this server")
            );
        }
    }

    #[test]
    fn another_prefix_is_not_an_sqs_action() {
        for target in ["AWSEvents.ListQueues", "AmazonSQSListQueues", "ListQueues"] {
            let e = SqsAction::from_target(target).unwrap_err();
            assert_eq!(e.shape, "UnsupportedOperation", "{target}");
        }
    }
}
