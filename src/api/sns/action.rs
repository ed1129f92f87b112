//! The SNS actions this server serves, parsed from the form field `Action`.

use crate::api::fronts::wire_actions;

wire_actions! {
    /// One SNS action, named as on the wire.
    pub(super) enum SnsAction {
        CreateTopic,
        DeleteTopic,
        ListTopics,
        GetTopicAttributes,
        SetTopicAttributes,
        Subscribe,
        ConfirmSubscription,
        Unsubscribe,
        ListSubscriptions,
        ListSubscriptionsByTopic,
        GetSubscriptionAttributes,
        SetSubscriptionAttributes,
        Publish,
        PublishBatch,
        TagResource,
        UntagResource,
        ListTagsForResource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_parses_from_its_name() {
        assert_eq!(SnsAction::ALL.len(), 17);
        for &action in SnsAction::ALL {
            assert_eq!(SnsAction::from_name(action.name()), Some(action));
        }
        assert_eq!(SnsAction::from_name("publish"), None);
        assert_eq!(SnsAction::from_name("CreatePlatformEndpoint"), None);
    }
}
