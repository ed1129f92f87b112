//! Regions: every function and queue lives in one, as on AWS.
//!
//! A request's region is the one its SigV4 credential scope names
//! (`<date>/<region>/<service>/aws4_request`); an unsigned request's is the server's
//! `--region`. Within a region a resource is known by its name; the registry, the stores,
//! the scheduler's pools, the async queue and the logs know it by its **key**: the bare
//! name in the data directory's *home region* (the region it was first started with,
//! recorded in the store), `region/name` in any other. Names can hold no `/`, so a key
//! says which region it is of, and the data of a store made before regions existed keeps
//! its keys.
//!
//! [`ArnContext`] is the account and one region: it prints ARNs in that region and makes
//! the keys of its resources. Everything that turns a key back into a name and a region
//! goes through [`ArnContext::of_key`].

use std::borrow::Cow;
use std::sync::Arc;

/// An account in one region: the ARNs of that region's resources, and their keys.
#[derive(Debug, Clone)]
pub struct ArnContext {
    pub region: String,
    pub account_id: String,
    /// The data directory's home region, whose resources' keys are their bare names.
    home: Arc<str>,
}

/// A region name that is not one: regions are lowercase letters, digits and `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a valid region name (1 to {REGION_MAX} lowercase letters, digits and '-')")]
pub struct InvalidRegion(pub String);

/// The longest region name accepted (AWS's are at most 20 characters or so).
pub const REGION_MAX: usize = 32;

/// Checks a region name's shape (`us-east-1`, `eu-central-2`, `local`).
pub fn validate_region(region: &str) -> Result<(), InvalidRegion> {
    let ok = !region.is_empty()
        && region.len() <= REGION_MAX
        && !region.starts_with('-')
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidRegion(region.to_string()))
    }
}

/// The region a request's SigV4 credential names, from its `Authorization` header or a
/// presigned URL's `X-Amz-Credential` (`<key>/<date>/<region>/<service>/aws4_request`);
/// `None` for an unsigned request.
pub fn signed_region<'a>(
    authorization: Option<&'a str>,
    query: Option<&'a str>,
) -> Option<Cow<'a, str>> {
    if let Some(header) = authorization {
        let credential = header
            .split([',', ' '])
            .find_map(|field| field.trim().strip_prefix("Credential="))?;
        return credential.split('/').nth(2).map(Cow::Borrowed);
    }
    let query = query?;
    let encoded = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("X-Amz-Credential="))?;
    let decoded = percent_decode(encoded);
    decoded
        .split('/')
        .nth(2)
        .map(|region| Cow::Owned(region.to_string()))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl ArnContext {
    /// The account in its home region.
    pub fn new(region: impl Into<String>, account_id: impl Into<String>) -> Self {
        let region = region.into();
        Self {
            home: Arc::from(region.as_str()),
            region,
            account_id: account_id.into(),
        }
    }

    /// The same account in another region.
    pub fn in_region(&self, region: &str) -> Self {
        Self {
            region: region.to_string(),
            account_id: self.account_id.clone(),
            home: self.home.clone(),
        }
    }

    /// Whether this is the home region (whose keys are bare names).
    pub fn is_home(&self) -> bool {
        *self.region == *self.home
    }

    /// The key of this region's resource `name`.
    pub fn key<'a>(&self, name: &'a str) -> Cow<'a, str> {
        if self.is_home() {
            Cow::Borrowed(name)
        } else {
            Cow::Owned(format!("{}/{name}", self.region))
        }
    }

    /// [`Self::key`] of an owned name, without a copy in the home region.
    pub fn owned_key(&self, name: String) -> String {
        if self.is_home() {
            name
        } else {
            format!("{}/{name}", self.region)
        }
    }

    /// The name a key of this region's has, or `None` when the key is of another region.
    pub fn name_in_region<'a>(&self, key: &'a str) -> Option<&'a str> {
        match key.split_once('/') {
            None => self.is_home().then_some(key),
            Some((region, name)) => (region == self.region).then_some(name),
        }
    }

    /// The region a key is of, and the resource's name there.
    pub fn of_key<'a>(&self, key: &'a str) -> (Cow<'_, Self>, &'a str) {
        match key.split_once('/') {
            None if self.is_home() => (Cow::Borrowed(self), key),
            None => (Cow::Owned(self.in_region(&self.home.clone())), key),
            Some((region, name)) if region == self.region => (Cow::Borrowed(self), name),
            Some((region, name)) => (Cow::Owned(self.in_region(region)), name),
        }
    }

    pub fn function_arn(&self, name: &str) -> String {
        crate::arn::Arn::lambda_function(&self.region, &self.account_id, name, None).to_string()
    }

    /// The ARN of a version or alias of a function.
    pub fn qualified_arn(&self, name: &str, qualifier: &str) -> String {
        crate::arn::Arn::lambda_function(&self.region, &self.account_id, name, Some(qualifier))
            .to_string()
    }

    /// The ARN of a queue of this region's.
    pub fn queue_arn(&self, name: &str) -> String {
        crate::arn::Arn::sqs_queue(&self.region, &self.account_id, name).to_string()
    }

    /// The key of the resource an ARN of this account names (in its own region).
    pub fn key_of_arn<'a>(&self, region: &str, name: &'a str) -> Cow<'a, str> {
        if region == &*self.home {
            Cow::Borrowed(name)
        } else {
            Cow::Owned(format!("{region}/{name}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_keys_are_bare_names_and_others_carry_their_region() {
        let home = ArnContext::new("us-east-1", "123456789012");
        assert_eq!(home.key("f"), "f");
        let west = home.in_region("us-west-2");
        assert_eq!(west.key("f"), "us-west-2/f");
        assert_eq!(
            west.function_arn("f"),
            "arn:aws:lambda:us-west-2:123456789012:function:f"
        );
        assert_eq!(home.name_in_region("f"), Some("f"));
        assert_eq!(home.name_in_region("us-west-2/f"), None);
        assert_eq!(west.name_in_region("us-west-2/f"), Some("f"));
        assert_eq!(west.name_in_region("f"), None);
        assert_eq!(west.name_in_region("eu-west-1/f"), None);
        let (ctx, name) = home.of_key("us-west-2/f");
        assert_eq!((ctx.region.as_str(), name), ("us-west-2", "f"));
        let (ctx, name) = west.of_key("f");
        assert_eq!((ctx.region.as_str(), name), ("us-east-1", "f"));
        assert_eq!(west.key_of_arn("us-east-1", "q"), "q");
        assert_eq!(home.key_of_arn("eu-west-1", "q"), "eu-west-1/q");
    }

    #[test]
    fn the_region_comes_from_the_credential_scope() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/eu-west-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(
            signed_region(Some(header), None).as_deref(),
            Some("eu-west-1")
        );
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261202%2Fap-south-1%2Fsqs%2Faws4_request&X-Amz-Date=x";
        assert_eq!(
            signed_region(None, Some(query)).as_deref(),
            Some("ap-south-1")
        );
        assert_eq!(signed_region(None, Some("a=b")), None);
        assert_eq!(signed_region(None, None), None);
    }

    #[test]
    fn region_names_are_checked() {
        for ok in ["us-east-1", "eu-central-2", "local", "us-gov-west-1"] {
            assert!(validate_region(ok).is_ok(), "{ok}");
        }
        for bad in ["", "US-EAST-1", "us/east", "-x", "a b", &"x".repeat(40)] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
    }
}
