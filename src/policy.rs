//! Resource-based policies of functions (Lambda's `AddPermission`, `RemovePermission`,
//! `GetPolicy`): the statements, as Lambda writes them, and the one question the
//! platform asks of them.
//!
//! A function's document keeps one list of statements per qualifier (`$LATEST` for the
//! unqualified function, a version or an alias). Statements are stored as Lambda renders
//! them (`Sid`, `Effect`, `Principal`, `Action`, `Resource`, `Condition`), so `GetPolicy`
//! returns what `AddPermission` made. The platform evaluates them where a caller is not
//! the account owner: a function URL with auth type `NONE` is served only when a
//! statement allows `lambda:InvokeFunctionUrl` to everyone (`*`), with no condition other
//! than `lambda:FunctionUrlAuthType = NONE`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Lambda's limit on a function's policy document, in bytes.
pub const POLICY_MAX_BYTES: usize = 20 * 1024;

/// One statement, kept as Lambda renders it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement(pub Value);

/// `AddPermission`'s input, checked by [`Permission::statement`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Permission {
    pub statement_id: String,
    pub action: String,
    pub principal: String,
    pub source_arn: Option<String>,
    pub source_account: Option<String>,
    pub event_source_token: Option<String>,
    #[serde(rename = "PrincipalOrgID")]
    pub principal_org_id: Option<String>,
    pub function_url_auth_type: Option<String>,
    pub invoked_via_function_url: Option<bool>,
    pub revision_id: Option<String>,
}

fn pattern_error(value: &str, field: &str, pattern: &str) -> String {
    format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: \
         Member must satisfy regular expression pattern: {pattern}"
    )
}

fn is_sid(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_action(s: &str) -> bool {
    s == "*"
        || s.strip_prefix("lambda:").is_some_and(|rest| {
            rest == "*" || (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphabetic()))
        })
}

/// The principal as a policy names it: `*`, a service (`{"Service": ...}`), or an account
/// or IAM ARN (`{"AWS": ...}`).
fn principal(raw: &str) -> Value {
    if raw == "*" {
        Value::String("*".into())
    } else if raw.len() == 12 && raw.bytes().all(|b| b.is_ascii_digit()) {
        json!({ "AWS": format!("arn:aws:iam::{raw}:root") })
    } else if raw.starts_with("arn:") {
        json!({ "AWS": raw })
    } else {
        json!({ "Service": raw })
    }
}

impl Permission {
    /// The statement this permission makes on `resource` (the function's ARN, qualified
    /// when the permission is); the message is an `InvalidParameterValueException`'s.
    pub fn statement(&self, resource: &str) -> Result<Statement, String> {
        if !is_sid(&self.statement_id) {
            return Err(pattern_error(
                &self.statement_id,
                "statementId",
                "([a-zA-Z0-9-_]+)",
            ));
        }
        if !is_action(&self.action) {
            return Err(pattern_error(
                &self.action,
                "action",
                "(lambda:[*]|lambda:[a-zA-Z]+|[*])",
            ));
        }
        if self.principal.is_empty() || self.principal.chars().any(char::is_whitespace) {
            return Err(pattern_error(&self.principal, "principal", "[^\\s]+"));
        }
        let mut equals = Map::new();
        let mut conditions = Map::new();
        if let Some(account) = &self.source_account {
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(pattern_error(account, "sourceAccount", "\\d{12}"));
            }
            equals.insert("AWS:SourceAccount".into(), json!(account));
        }
        if let Some(token) = &self.event_source_token {
            equals.insert("lambda:EventSourceToken".into(), json!(token));
        }
        if let Some(org) = &self.principal_org_id {
            equals.insert("aws:PrincipalOrgID".into(), json!(org));
        }
        if let Some(auth) = &self.function_url_auth_type {
            if crate::urls::AuthType::parse(auth).is_none() {
                return Err(format!(
                    "1 validation error detected: Value '{auth}' at 'functionUrlAuthType' failed to satisfy constraint: \
                     Member must satisfy enum value set: [NONE, AWS_IAM]"
                ));
            }
            equals.insert("lambda:FunctionUrlAuthType".into(), json!(auth));
        }
        if !equals.is_empty() {
            conditions.insert("StringEquals".into(), Value::Object(equals));
        }
        if let Some(arn) = &self.source_arn {
            if !arn.starts_with("arn:") || arn.split(':').count() < 6 {
                return Err(pattern_error(
                    arn,
                    "sourceArn",
                    "arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\\-])+:([a-z]{2}(-gov)?-[a-z]+-\\d{1})?:(\\d{12})?:(.*)",
                ));
            }
            conditions.insert("ArnLike".into(), json!({ "AWS:SourceArn": arn }));
        }
        if self.invoked_via_function_url == Some(true) {
            conditions.insert(
                "Bool".into(),
                json!({ "lambda:InvokedViaFunctionUrl": "true" }),
            );
        }
        let mut statement = json!({
            "Sid": self.statement_id,
            "Effect": "Allow",
            "Principal": principal(&self.principal),
            "Action": self.action,
            "Resource": resource,
        });
        if !conditions.is_empty() {
            statement["Condition"] = Value::Object(conditions);
        }
        Ok(Statement(statement))
    }
}

impl Statement {
    pub fn sid(&self) -> &str {
        self.0.get("Sid").and_then(Value::as_str).unwrap_or("")
    }

    /// Whether it lets anyone invoke a function URL of auth type `NONE`.
    fn allows_public_url(&self) -> bool {
        let s = &self.0;
        let allow = s.get("Effect").and_then(Value::as_str) == Some("Allow");
        let everyone = match s.get("Principal") {
            Some(Value::String(p)) => p == "*",
            Some(Value::Object(p)) => p.get("AWS").and_then(Value::as_str) == Some("*"),
            _ => false,
        };
        let action = s
            .get("Action")
            .and_then(Value::as_str)
            .is_some_and(|a| matches!(a, "lambda:InvokeFunctionUrl" | "lambda:*" | "*"));
        // Only the auth-type condition can hold for an anonymous request.
        let conditions_hold = match s.get("Condition").and_then(Value::as_object) {
            None => true,
            Some(conditions) => conditions.iter().all(|(operator, tests)| {
                operator == "StringEquals"
                    && tests.as_object().is_some_and(|tests| {
                        tests.iter().all(|(key, value)| {
                            key.eq_ignore_ascii_case("lambda:FunctionUrlAuthType")
                                && value.as_str() == Some("NONE")
                        })
                    })
            }),
        };
        allow && everyone && action && conditions_hold
    }
}

/// Whether `statements` let anyone invoke a function URL of auth type `NONE`.
pub fn allows_public_url(statements: &[Statement]) -> bool {
    statements.iter().any(Statement::allows_public_url)
}

/// Whether `statements` let a service (`apigateway.amazonaws.com`) invoke the function
/// on behalf of `source_arn` in `account`: an `Allow` of `lambda:InvokeFunction` to that
/// service (or everyone) whose conditions (`ArnLike`/`ArnEquals`/`StringLike`/
/// `StringEquals` on `AWS:SourceArn` and `AWS:SourceAccount`) hold.
pub fn allows_service(
    statements: &[Statement],
    service: &str,
    source_arn: &str,
    account: &str,
) -> bool {
    statements.iter().any(|s| {
        let s = &s.0;
        let allow = s.get("Effect").and_then(Value::as_str) == Some("Allow");
        let principal = match s.get("Principal") {
            Some(Value::String(p)) => p == "*",
            Some(Value::Object(p)) => {
                p.get("Service").and_then(Value::as_str) == Some(service)
                    || p.get("AWS").and_then(Value::as_str) == Some("*")
            }
            _ => false,
        };
        let action = s
            .get("Action")
            .and_then(Value::as_str)
            .is_some_and(|a| matches!(a, "lambda:InvokeFunction" | "lambda:*" | "*"));
        let conditions_hold = match s.get("Condition").and_then(Value::as_object) {
            None => true,
            Some(conditions) => conditions.iter().all(|(operator, tests)| {
                tests.as_object().is_some_and(|tests| {
                    tests.iter().all(|(key, value)| {
                        let Some(expected) = value.as_str() else {
                            return false;
                        };
                        let actual = if key.eq_ignore_ascii_case("AWS:SourceArn") {
                            source_arn
                        } else if key.eq_ignore_ascii_case("AWS:SourceAccount") {
                            account
                        } else {
                            return false;
                        };
                        match operator.as_str() {
                            "ArnLike" | "StringLike" => glob(expected, actual),
                            "ArnEquals" | "StringEquals" => expected == actual,
                            _ => false,
                        }
                    })
                })
            }),
        };
        allow && principal && action && conditions_hold
    })
}

/// Whether `text` matches `pattern`, whose `*` stands for any run of characters and `?`
/// for one (IAM's `ArnLike`/`StringLike`).
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The policy document of `statements`, as `GetPolicy` returns it (a JSON string).
pub fn document(statements: &[Statement]) -> String {
    json!({
        "Version": "2012-10-17",
        "Id": "default",
        "Statement": statements.iter().map(|s| &s.0).collect::<Vec<_>>(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permission(sid: &str, action: &str, principal: &str) -> Permission {
        Permission {
            statement_id: sid.into(),
            action: action.into(),
            principal: principal.into(),
            ..Permission::default()
        }
    }

    const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:f";

    #[test]
    fn statements_are_rendered_as_lambda_does() {
        let mut p = permission("s3", "lambda:InvokeFunction", "s3.amazonaws.com");
        p.source_arn = Some("arn:aws:s3:::bucket".into());
        p.source_account = Some("123456789012".into());
        let s = p.statement(ARN).unwrap();
        assert_eq!(
            s.0,
            json!({
                "Sid": "s3", "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "lambda:InvokeFunction", "Resource": ARN,
                "Condition": {
                    "StringEquals": {"AWS:SourceAccount": "123456789012"},
                    "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket"},
                },
            })
        );
        let account = permission("a", "lambda:*", "123456789012")
            .statement(ARN)
            .unwrap();
        assert_eq!(
            account.0["Principal"],
            json!({"AWS": "arn:aws:iam::123456789012:root"})
        );
        let doc: Value = serde_json::from_str(&document(&[s, account])).unwrap();
        assert_eq!(doc["Statement"].as_array().unwrap().len(), 2);
        assert_eq!(doc["Version"], "2012-10-17");
    }

    #[test]
    fn services_are_allowed_by_principal_action_and_source_arn() {
        let mut p = permission("apigw", "lambda:InvokeFunction", "apigateway.amazonaws.com");
        p.source_arn = Some("arn:aws:execute-api:us-east-1:000000000000:abc/*/*".into());
        let s = vec![p.statement(ARN).unwrap()];
        let arn = "arn:aws:execute-api:us-east-1:000000000000:abc/$default/GET/pets/{id}";
        assert!(allows_service(
            &s,
            "apigateway.amazonaws.com",
            arn,
            "000000000000"
        ));
        let other = "arn:aws:execute-api:us-east-1:000000000000:xyz/$default/GET/pets";
        assert!(!allows_service(
            &s,
            "apigateway.amazonaws.com",
            other,
            "000000000000"
        ));
        assert!(!allows_service(
            &s,
            "sns.amazonaws.com",
            arn,
            "000000000000"
        ));
        let open = vec![permission("all", "lambda:*", "*").statement(ARN).unwrap()];
        assert!(allows_service(
            &open,
            "apigateway.amazonaws.com",
            other,
            "000000000000"
        ));
        assert!(glob("a*c?e", "abbbcde"));
        assert!(!glob("a*c?e", "abbbce"));
        assert!(glob("*", ""));
    }

    #[test]
    fn bad_permissions_are_refused() {
        assert!(
            permission("bad sid", "lambda:InvokeFunction", "*")
                .statement(ARN)
                .is_err()
        );
        assert!(permission("s", "s3:GetObject", "*").statement(ARN).is_err());
        assert!(
            permission("s", "lambda:InvokeFunction", "")
                .statement(ARN)
                .is_err()
        );
        let mut p = permission("s", "lambda:InvokeFunction", "*");
        p.function_url_auth_type = Some("OPEN".into());
        assert!(p.statement(ARN).is_err());
        let mut p = permission("s", "lambda:InvokeFunction", "*");
        p.source_account = Some("12".into());
        assert!(p.statement(ARN).is_err());
    }

    #[test]
    fn a_public_url_needs_a_statement_for_everyone() {
        let mut public = permission("url", "lambda:InvokeFunctionUrl", "*");
        public.function_url_auth_type = Some("NONE".into());
        assert!(allows_public_url(&[public.statement(ARN).unwrap()]));
        // No statement, another action, another principal, another condition: no.
        assert!(!allows_public_url(&[]));
        let invoke = permission("i", "lambda:InvokeFunction", "*")
            .statement(ARN)
            .unwrap();
        assert!(!allows_public_url(&[invoke]));
        let account = permission("a", "lambda:InvokeFunctionUrl", "123456789012")
            .statement(ARN)
            .unwrap();
        assert!(!allows_public_url(&[account]));
        let mut sourced = permission("s", "lambda:InvokeFunctionUrl", "*");
        sourced.source_account = Some("123456789012".into());
        assert!(!allows_public_url(&[sourced.statement(ARN).unwrap()]));
        let mut iam = permission("s", "lambda:InvokeFunctionUrl", "*");
        iam.function_url_auth_type = Some("AWS_IAM".into());
        assert!(!allows_public_url(&[iam.statement(ARN).unwrap()]));
    }
}
