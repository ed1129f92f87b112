//! The topic actions: create, delete, list, attributes, tags.

use std::collections::BTreeMap;

use super::error::SnsError;
use super::{Call, Xml};
use crate::api::query::Form;

/// `Attributes.entry.N.key/value`.
fn attribute_map(form: &Form) -> Result<BTreeMap<String, String>, SnsError> {
    form.string_map("Attributes").map_err(|n| {
        SnsError::invalid(format!(
            "Invalid parameter: Attributes entry {n} has no key"
        ))
    })
}

/// `Tags.member.N.Key/Value`.
fn tag_list(form: &Form) -> Result<BTreeMap<String, String>, SnsError> {
    let mut tags = BTreeMap::new();
    for (number, item) in form.indexed("Tags.member") {
        let key = item.get("Key").ok_or_else(|| {
            SnsError::invalid(format!(
                "Invalid parameter: Tags member {number} has no Key"
            ))
        })?;
        tags.insert(
            key.to_string(),
            item.get("Value").unwrap_or_default().to_string(),
        );
    }
    Ok(tags)
}

pub(super) async fn create_topic(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let name = call.required("Name")?.to_string();
    let mut attributes = attribute_map(&call.form)?;
    if let Some(policy) = call.get("DataProtectionPolicy") {
        attributes.insert("DataProtectionPolicy".into(), policy.to_string());
    }
    let tags = tag_list(&call.form)?;
    let region = call.scope.0.clone();
    let arn = call
        .topics(move |t| t.create_topic(&region, &name, attributes, tags))
        .await?;
    let mut xml = Xml::default();
    xml.leaf("TopicArn", &arn);
    Ok(Some(xml))
}

pub(super) async fn delete_topic(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let arn = call.required("TopicArn")?.to_string();
    call.topics(move |t| t.delete_topic(&arn)).await?;
    Ok(None)
}

pub(super) async fn list_topics(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let region = call.scope.region.clone();
    let token = call.get("NextToken").map(str::to_string);
    let (arns, next) = call
        .topics(move |t| t.list_topics(&region, token.as_deref()))
        .await?;
    let mut xml = Xml::default();
    xml.element("Topics", |xml| {
        for arn in &arns {
            xml.element("member", |xml| xml.leaf("TopicArn", arn));
        }
    });
    xml.leaf_opt("NextToken", next.as_deref());
    Ok(Some(xml))
}

pub(super) async fn get_topic_attributes(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let arn = call.required("TopicArn")?.to_string();
    let attributes = call.topics(move |t| t.topic_attributes(&arn)).await?;
    let mut xml = Xml::default();
    xml.string_map(
        "Attributes",
        attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    Ok(Some(xml))
}

pub(super) async fn set_topic_attributes(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let arn = call.required("TopicArn")?.to_string();
    let name = call.required("AttributeName")?.to_string();
    let value = call.get("AttributeValue").unwrap_or_default().to_string();
    call.topics(move |t| t.set_topic_attribute(&arn, &name, &value))
        .await?;
    Ok(None)
}

pub(super) async fn tag_resource(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let arn = call.required("ResourceArn")?.to_string();
    let tags = tag_list(&call.form)?;
    call.topics(move |t| t.tag(&arn, tags)).await?;
    Ok(Some(Xml::default()))
}

pub(super) async fn untag_resource(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let arn = call.required("ResourceArn")?.to_string();
    let keys = call.form.strings("TagKeys.member");
    call.topics(move |t| t.untag(&arn, &keys)).await?;
    Ok(Some(Xml::default()))
}

pub(super) async fn list_tags_for_resource(call: &Call<'_>) -> Result<Option<Xml>, SnsError> {
    let arn = call.required("ResourceArn")?.to_string();
    let tags = call.topics(move |t| t.tags(&arn)).await?;
    let mut xml = Xml::default();
    xml.element("Tags", |xml| {
        for (key, value) in &tags {
            xml.element("member", |xml| {
                xml.leaf("Key", key);
                xml.leaf("Value", value);
            });
        }
    });
    Ok(Some(xml))
}
