//! The XML answers of the query protocol: `<{Action}Response>` with the action's
//! `<{Action}Result>` and `<ResponseMetadata>`, and `<ErrorResponse>`, written as botocore's
//! query parser reads them (lists as `<member>`, maps as `<entry><key/><value/></entry>`).

use std::fmt::Write;

/// A document being written.
#[derive(Debug, Default)]
pub struct Xml {
    out: String,
}

impl Xml {
    /// `<{action}Response xmlns=...>`, the `result` inside `<{action}Result>` (none for
    /// an action without output), and the request id.
    pub fn response(
        action: &str,
        namespace: &str,
        request_id: &str,
        result: Option<&Xml>,
    ) -> String {
        let mut xml = Xml::default();
        let _ = write!(
            xml.out,
            "<?xml version=\"1.0\"?><{action}Response xmlns=\"{namespace}\">"
        );
        if let Some(result) = result {
            let wrapper = format!("{action}Result");
            xml.open(&wrapper);
            xml.out.push_str(&result.out);
            xml.close(&wrapper);
        }
        xml.open("ResponseMetadata");
        xml.leaf("RequestId", request_id);
        xml.close("ResponseMetadata");
        let _ = write!(xml.out, "</{action}Response>");
        xml.out
    }

    /// `<ErrorResponse>`: whose fault (`Sender` or `Receiver`), the code, the message.
    pub fn error(
        namespace: &str,
        fault: &str,
        code: &str,
        message: &str,
        request_id: &str,
    ) -> String {
        let mut xml = Xml::default();
        let _ = write!(
            xml.out,
            "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"{namespace}\">"
        );
        xml.open("Error");
        xml.leaf("Type", fault);
        xml.leaf("Code", code);
        xml.leaf("Message", message);
        xml.close("Error");
        xml.leaf("RequestId", request_id);
        xml.out.push_str("</ErrorResponse>");
        xml.out
    }

    pub fn open(&mut self, tag: &str) {
        let _ = write!(self.out, "<{tag}>");
    }

    pub fn close(&mut self, tag: &str) {
        let _ = write!(self.out, "</{tag}>");
    }

    /// `<tag>text</tag>`, the text escaped.
    pub fn leaf(&mut self, tag: &str, text: &str) {
        self.open(tag);
        escape_into(&mut self.out, text);
        self.close(tag);
    }

    /// A leaf when there is a value.
    pub fn leaf_opt(&mut self, tag: &str, text: Option<&str>) {
        if let Some(text) = text {
            self.leaf(tag, text);
        }
    }

    /// `<tag>` around what `inner` writes.
    pub fn element(&mut self, tag: &str, inner: impl FnOnce(&mut Xml)) {
        self.open(tag);
        inner(self);
        self.close(tag);
    }

    /// A map of strings: `<tag><entry><key>k</key><value>v</value></entry>...</tag>`.
    pub fn string_map<'a>(&mut self, tag: &str, map: impl IntoIterator<Item = (&'a str, &'a str)>) {
        self.element(tag, |xml| {
            for (key, value) in map {
                xml.element("entry", |xml| {
                    xml.leaf("key", key);
                    xml.leaf("value", value);
                });
            }
        });
    }
}

/// Appends `text` escaped for XML character data and attribute values. A carriage
/// return is written as a character reference, so a parser does not fold `\r\n` into
/// `\n`.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_wrap_the_result_and_the_request_id() {
        let doc = Xml::response(
            "CreateTopic",
            "http://sns.amazonaws.com/doc/2010-03-31/",
            "r-1",
            Some(&{
                let mut result = Xml::default();
                result.leaf("TopicArn", "arn:aws:sns:r:1:t");
                result
            }),
        );
        assert_eq!(
            doc,
            "<?xml version=\"1.0\"?><CreateTopicResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\">\
             <CreateTopicResult><TopicArn>arn:aws:sns:r:1:t</TopicArn></CreateTopicResult>\
             <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></CreateTopicResponse>"
        );
        let empty = Xml::response("DeleteTopic", "ns", "r-2", None);
        assert!(!empty.contains("DeleteTopicResult"));
        assert!(empty.contains("<RequestId>r-2</RequestId>"));
    }

    #[test]
    fn text_is_escaped() {
        let mut xml = Xml::default();
        xml.leaf("M", "a<b>&\"c'\r\n");
        assert_eq!(xml.out, "<M>a&lt;b&gt;&amp;&quot;c&apos;&#xD;\n</M>");
        let error = Xml::error("ns", "Sender", "NotFound", "Topic <x> does not exist", "r");
        assert!(error.contains("<Type>Sender</Type><Code>NotFound</Code>"));
        assert!(error.contains("Topic &lt;x&gt; does not exist"));
    }

    #[test]
    fn maps_are_entries() {
        let mut xml = Xml::default();
        xml.string_map("Attributes", [("A", "1"), ("B", "2")]);
        assert_eq!(
            xml.out,
            "<Attributes><entry><key>A</key><value>1</value></entry>\
             <entry><key>B</key><value>2</value></entry></Attributes>"
        );
    }
}
