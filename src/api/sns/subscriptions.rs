//! The subscription actions: subscribe, confirm, unsubscribe, list, attributes.

use super::error::SnsError;
use super::{Call, Xml};
use crate::topics::Listed;

pub(super) async fn subscribe(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let topic = call.required("TopicArn")?.to_string();
    let protocol = call.required("Protocol")?.to_string();
    let endpoint = call.get("Endpoint").map(str::to_string);
    let attributes = call.form.string_map("Attributes").map_err(|n| {
        SnsError::invalid(format!(
            "Invalid parameter: Attributes entry {n} has no key"
        ))
    })?;
    let return_arn = call.flag("ReturnSubscriptionArn")?;
    let arn = call
        .topics(move |t| {
            t.subscribe(
                &topic,
                &protocol,
                endpoint.as_deref(),
                attributes,
                return_arn,
            )
        })
        .await?;
    let mut xml = Xml::default();
    xml.leaf("SubscriptionArn", &arn);
    Ok(Some(xml))
}

pub(super) async fn confirm_subscription(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let topic = call.required("TopicArn")?.to_string();
    let token = call.required("Token")?.to_string();
    let arn = call.topics(move |t| t.confirm(&topic, &token)).await?;
    let mut xml = Xml::default();
    xml.leaf("SubscriptionArn", &arn);
    Ok(Some(xml))
}

pub(super) async fn unsubscribe(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let arn = call.required("SubscriptionArn")?.to_string();
    call.topics(move |t| t.unsubscribe(&arn)).await?;
    Ok(None)
}

fn listed(rows: &[Listed], next: Option<&str>, account: &str) -> Xml {
    let mut xml = Xml::default();
    xml.element("Subscriptions", |xml| {
        for row in rows {
            xml.element("member", |xml| {
                xml.leaf("SubscriptionArn", &row.arn);
                xml.leaf("Owner", account);
                xml.leaf("Protocol", row.protocol.name());
                xml.leaf("Endpoint", &row.endpoint);
                xml.leaf("TopicArn", &row.topic_arn);
            });
        }
    });
    xml.leaf_opt("NextToken", next);
    xml
}

pub(super) async fn list_subscriptions(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let region = call.scope.region.clone();
    let token = call.get("NextToken").map(str::to_string);
    let (rows, next) = call
        .topics(move |t| t.list_subscriptions(None, &region, token.as_deref()))
        .await?;
    Ok(Some(listed(&rows, next.as_deref(), &call.scope.account_id)))
}

pub(super) async fn list_subscriptions_by_topic(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let topic = call.required("TopicArn")?.to_string();
    let region = call.scope.region.clone();
    let token = call.get("NextToken").map(str::to_string);
    let (rows, next) = call
        .topics(move |t| t.list_subscriptions(Some(&topic), &region, token.as_deref()))
        .await?;
    Ok(Some(listed(&rows, next.as_deref(), &call.scope.account_id)))
}

pub(super) async fn get_subscription_attributes(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let arn = call.required("SubscriptionArn")?.to_string();
    let attributes = call
        .topics(move |t| t.subscription_attributes(&arn))
        .await?;
    let mut xml = Xml::default();
    xml.string_map(
        "Attributes",
        attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    Ok(Some(xml))
}

pub(super) async fn set_subscription_attributes(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let arn = call.required("SubscriptionArn")?.to_string();
    let name = call.required("AttributeName")?.to_string();
    let value = call.get("AttributeValue").unwrap_or_default().to_string();
    call.topics(move |t| t.set_subscription_attribute(&arn, &name, &value))
        .await?;
    Ok(None)
}
