//! Amazon Resource Names: parsed and printed here, and nowhere else.
//!
//! An ARN is `arn:<partition>:<service>:<region>:<account>:<resource>`; the resource may
//! itself hold colons (`function:NAME:QUALIFIER`). [`Arn`] is the general shape;
//! [`Arn::lambda_function`] and [`Arn::sqs_queue`] build the two kinds Shoal owns today,
//! and [`Arn::function_parts`] / [`Arn::queue_name`] read them back.

use std::fmt;

/// The partition every ARN of this server is in.
pub const PARTITION: &str = "aws";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Arn {
    pub partition: String,
    pub service: String,
    pub region: String,
    pub account: String,
    /// Everything after the account, colons included.
    pub resource: String,
}

/// Why a string is not an ARN of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArnError {
    #[error("{0} is not an ARN (arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE)")]
    Malformed(String),
    #[error("{arn} is not a {expected} ARN")]
    WrongKind { arn: String, expected: &'static str },
}

impl Arn {
    pub fn parse(raw: &str) -> Result<Self, ArnError> {
        let malformed = || ArnError::Malformed(raw.to_string());
        let mut parts = raw.splitn(6, ':');
        if parts.next() != Some("arn") {
            return Err(malformed());
        }
        let mut field = || parts.next().map(str::to_string).ok_or_else(malformed);
        let arn = Self {
            partition: field()?,
            service: field()?,
            region: field()?,
            account: field()?,
            resource: field()?,
        };
        if arn.partition.is_empty() || arn.service.is_empty() || arn.resource.is_empty() {
            return Err(malformed());
        }
        Ok(arn)
    }

    fn new(service: &str, region: &str, account: &str, resource: String) -> Self {
        Self {
            partition: PARTITION.to_string(),
            service: service.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            resource,
        }
    }

    /// `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`.
    pub fn lambda_function(
        region: &str,
        account: &str,
        name: &str,
        qualifier: Option<&str>,
    ) -> Self {
        let resource = match qualifier {
            Some(q) => format!("function:{name}:{q}"),
            None => format!("function:{name}"),
        };
        Self::new("lambda", region, account, resource)
    }

    /// `arn:aws:sqs:REGION:ACCOUNT:NAME`.
    pub fn sqs_queue(region: &str, account: &str, name: &str) -> Self {
        Self::new("sqs", region, account, name.to_string())
    }

    /// The function name and qualifier of a Lambda function ARN.
    pub fn function_parts(&self) -> Result<(&str, Option<&str>), ArnError> {
        let wrong = || ArnError::WrongKind {
            arn: self.to_string(),
            expected: "Lambda function",
        };
        if self.service != "lambda" {
            return Err(wrong());
        }
        let rest = self.resource.strip_prefix("function:").ok_or_else(wrong)?;
        let mut parts = rest.split(':');
        let name = parts.next().filter(|n| !n.is_empty()).ok_or_else(wrong)?;
        let qualifier = parts.next();
        if parts.next().is_some() || qualifier == Some("") {
            return Err(wrong());
        }
        Ok((name, qualifier))
    }

    /// The queue name of an SQS queue ARN.
    pub fn queue_name(&self) -> Result<&str, ArnError> {
        if self.service != "sqs" || self.resource.contains(':') {
            return Err(ArnError::WrongKind {
                arn: self.to_string(),
                expected: "SQS queue",
            });
        }
        Ok(&self.resource)
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:{}:{}:{}:{}",
            self.partition, self.service, self.region, self.account, self.resource
        )
    }
}

impl std::str::FromStr for Arn {
    type Err = ArnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        for raw in [
            "arn:aws:lambda:us-east-1:123456789012:function:hello",
            "arn:aws:lambda:us-east-1:123456789012:function:hello:prod",
            "arn:aws:sqs:eu-west-1:000000000000:jobs",
            "arn:aws:iam::000000000000:role/shoal",
        ] {
            let arn = Arn::parse(raw).unwrap();
            assert_eq!(arn.to_string(), raw);
        }
        let arn = Arn::parse("arn:aws:lambda:us-east-1:1:function:f:2").unwrap();
        assert_eq!(arn.service, "lambda");
        assert_eq!(arn.region, "us-east-1");
        assert_eq!(arn.account, "1");
        assert_eq!(arn.function_parts().unwrap(), ("f", Some("2")));
    }

    #[test]
    fn builds_the_kinds_shoal_owns() {
        let f = Arn::lambda_function("us-west-2", "000000000000", "f", None);
        assert_eq!(
            f.to_string(),
            "arn:aws:lambda:us-west-2:000000000000:function:f"
        );
        assert_eq!(f.function_parts().unwrap(), ("f", None));
        let v = Arn::lambda_function("us-west-2", "000000000000", "f", Some("7"));
        assert_eq!(
            v.to_string(),
            "arn:aws:lambda:us-west-2:000000000000:function:f:7"
        );
        let q = Arn::sqs_queue("us-east-1", "000000000000", "jobs");
        assert_eq!(q.to_string(), "arn:aws:sqs:us-east-1:000000000000:jobs");
        assert_eq!(q.queue_name().unwrap(), "jobs");
    }

    #[test]
    fn refuses_what_is_not_an_arn_or_not_the_kind_asked() {
        for raw in [
            "",
            "arn",
            "arn:aws",
            "arn:aws:sqs:r:a",
            "urn:aws:sqs:r:a:q",
            "arn::sqs:r:a:q",
            "arn:aws:sqs:r:a:",
        ] {
            assert!(
                matches!(Arn::parse(raw), Err(ArnError::Malformed(_))),
                "{raw}"
            );
        }
        let queue = Arn::parse("arn:aws:sqs:r:a:q").unwrap();
        assert!(matches!(
            queue.function_parts(),
            Err(ArnError::WrongKind { .. })
        ));
        let function = Arn::parse("arn:aws:lambda:r:a:function:f").unwrap();
        assert!(function.queue_name().is_err());
        for raw in [
            "arn:aws:lambda:r:a:layer:f",
            "arn:aws:lambda:r:a:function:",
            "arn:aws:lambda:r:a:function:f:",
            "arn:aws:lambda:r:a:function:f:1:2",
        ] {
            assert!(Arn::parse(raw).unwrap().function_parts().is_err(), "{raw}");
        }
    }
}
