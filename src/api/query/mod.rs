//! The AWS query protocol, shared by the fronts that speak it (SNS; SQS's older
//! protocol): a request is a form (`Action=...&Version=...` and the action's parameters,
//! lists and maps spelled out as numbered fields), an answer is XML.
//!
//! `form.rs` reads the form into the structure botocore's query serializer flattened;
//! `xml.rs` writes the `<ActionResponse>` and `<ErrorResponse>` documents botocore's
//! query parser reads back.

pub mod form;
pub mod xml;

pub use form::Form;
pub use xml::Xml;
