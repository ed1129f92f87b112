//! A query-protocol request body: `application/x-www-form-urlencoded` fields, read back
//! into the shapes botocore's query serializer flattens.
//!
//! - a scalar is one field: `TopicArn=...`;
//! - a list is numbered from 1: `Tags.member.1.Key=...` (or flattened, `Tag.1.Key`, as
//!   SQS's shapes are);
//! - a map is a list of entries: `Attributes.entry.1.key=...&Attributes.entry.1.value=...`
//!   (SNS's message attributes name theirs `Name` and `Value`).
//!
//! [`Form::indexed`] gives the numbered items under a prefix, each as a [`Form`] of its
//! own fields, so nested shapes (a batch entry's message attributes) read the same way.

use std::collections::BTreeMap;

/// The fields of a form, or of one item of a list in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    fields: BTreeMap<String, String>,
}

impl Form {
    /// Reads an url-encoded body (`+` is a space; a name given twice keeps its first
    /// value).
    pub fn parse(body: &[u8]) -> Self {
        let mut fields = BTreeMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            fields
                .entry(name.into_owned())
                .or_insert_with(|| value.into_owned());
        }
        Self { fields }
    }

    /// A field's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// The fields that are not part of a list or map (no `.` in their name).
    pub fn scalars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .filter(|(name, _)| !name.contains('.'))
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// The numbered items under `prefix` (`prefix.1`, `prefix.1.Key`, ...), in the order
    /// of their numbers, each with its own fields (the item's value itself under `""`).
    /// Numbers that are not positive integers are not items.
    pub fn indexed(&self, prefix: &str) -> Vec<(u32, Form)> {
        let head = format!("{prefix}.");
        let mut items: BTreeMap<u32, Form> = BTreeMap::new();
        for (name, value) in self.fields.range(head.clone()..) {
            let Some(rest) = name.strip_prefix(&head) else {
                break;
            };
            let (number, field) = rest.split_once('.').unwrap_or((rest, ""));
            let Ok(number) = number.parse::<u32>() else {
                continue;
            };
            if number == 0 || number.to_string() != rest.split('.').next().unwrap_or_default() {
                continue;
            }
            items
                .entry(number)
                .or_default()
                .fields
                .insert(field.to_string(), value.clone());
        }
        items.into_iter().collect()
    }

    /// A list of scalars: `prefix.1=a&prefix.2=b` (pass `Name.member` for a list that is
    /// not flattened).
    pub fn strings(&self, prefix: &str) -> Vec<String> {
        self.indexed(prefix)
            .into_iter()
            .filter_map(|(_, item)| item.get("").map(str::to_string))
            .collect()
    }

    /// A map spelled as entries: `prefix.entry.N.<key_name>` and `.<value_name>`, as
    /// (key, the entry's other fields) pairs; `None` names the entry whose key is missing.
    pub fn entries(&self, prefix: &str, key_name: &str) -> Vec<(Option<String>, Form)> {
        self.indexed(&format!("{prefix}.entry"))
            .into_iter()
            .map(|(_, item)| (item.get(key_name).map(str::to_string), item))
            .collect()
    }

    /// A map of strings: `prefix.entry.N.key` / `prefix.entry.N.value`. An entry without
    /// a key is `Err` with its number.
    pub fn string_map(&self, prefix: &str) -> Result<BTreeMap<String, String>, u32> {
        let mut map = BTreeMap::new();
        for (number, item) in self.indexed(&format!("{prefix}.entry")) {
            let key = item.get("key").ok_or(number)?;
            map.insert(
                key.to_string(),
                item.get("value").unwrap_or_default().to_string(),
            );
        }
        Ok(map)
    }

    /// The fields under `prefix.` as a form of their own (a nested structure).
    pub fn nested(&self, prefix: &str) -> Form {
        let head = format!("{prefix}.");
        Self {
            fields: self
                .fields
                .range(head.clone()..)
                .take_while(|(name, _)| name.starts_with(&head))
                .map(|(name, value)| (name[head.len()..].to_string(), value.clone()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_decoded_and_the_first_of_a_repeated_name_wins() {
        let form = Form::parse(b"Action=Publish&Message=a+b%26c%3D&Message=second&Empty=");
        assert_eq!(form.get("Action"), Some("Publish"));
        assert_eq!(form.get("Message"), Some("a b&c="));
        assert_eq!(form.get("Empty"), Some(""));
        assert_eq!(form.get("Missing"), None);
    }

    #[test]
    fn lists_come_in_number_order_not_text_order() {
        let form = Form::parse(
            b"Tags.member.10.Key=j&Tags.member.2.Key=b&Tags.member.2.Value=2&Tags.member.1.Key=a\
              &TagKeys.member.2=y&TagKeys.member.1=x&TagKeys.member.0=zero&TagKeys.member.01=lead",
        );
        let tags = form.indexed("Tags.member");
        let numbers: Vec<u32> = tags.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, vec![1, 2, 10]);
        assert_eq!(tags[1].1.get("Key"), Some("b"));
        assert_eq!(tags[1].1.get("Value"), Some("2"));
        assert_eq!(tags[0].1.get("Value"), None);
        assert_eq!(form.strings("TagKeys.member"), vec!["x", "y"]);
    }

    #[test]
    fn maps_read_their_entries() {
        let form = Form::parse(
            b"Attributes.entry.1.key=DisplayName&Attributes.entry.1.value=Hi\
              &Attributes.entry.2.key=Policy&Attributes.entry.2.value=%7B%7D",
        );
        let map = form.string_map("Attributes").unwrap();
        assert_eq!(map["DisplayName"], "Hi");
        assert_eq!(map["Policy"], "{}");
        let keyless = Form::parse(b"Attributes.entry.1.value=x");
        assert_eq!(keyless.string_map("Attributes"), Err(1));
        let attrs = Form::parse(
            b"MessageAttributes.entry.1.Name=color&MessageAttributes.entry.1.Value.DataType=String\
              &MessageAttributes.entry.1.Value.StringValue=red",
        );
        let entries = attrs.entries("MessageAttributes", "Name");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0.as_deref(), Some("color"));
        let value = entries[0].1.nested("Value");
        assert_eq!(value.get("DataType"), Some("String"));
        assert_eq!(value.get("StringValue"), Some("red"));
    }

    #[test]
    fn nested_items_read_like_forms() {
        let form = Form::parse(
            b"PublishBatchRequestEntries.member.1.Id=a\
              &PublishBatchRequestEntries.member.1.MessageAttributes.entry.1.Name=k\
              &PublishBatchRequestEntries.member.1.MessageAttributes.entry.1.Value.DataType=Number\
              &PublishBatchRequestEntries.member.2.Id=b",
        );
        let entries = form.indexed("PublishBatchRequestEntries.member");
        assert_eq!(entries.len(), 2);
        let first = &entries[0].1;
        assert_eq!(first.get("Id"), Some("a"));
        let attributes = first.entries("MessageAttributes", "Name");
        assert_eq!(
            attributes[0].1.nested("Value").get("DataType"),
            Some("Number")
        );
        assert!(entries[1].1.entries("MessageAttributes", "Name").is_empty());
    }
}
