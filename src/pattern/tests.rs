//! The pattern language against tables of cases: (pattern, event, expected) for matching,
//! (pattern, expected message) for refusals, then the SNS and Lambda adapters. Each group
//! names the documentation page or event-ruler test file its cases come from; the cases
//! are restated for this matcher, not copied.

use serde_json::{Value, json};

use super::*;

/// A pattern, an event, and whether the pattern matches the event.
type Case = (&'static str, &'static str, bool);

fn check(group: &str, cases: &[Case]) {
    for (i, (pattern, event, expected)) in cases.iter().enumerate() {
        let compiled = Pattern::parse(pattern)
            .unwrap_or_else(|e| panic!("{group}[{i}]: {pattern} was refused: {e}"));
        let event: Value = serde_json::from_str(event)
            .unwrap_or_else(|e| panic!("{group}[{i}]: the event is not JSON: {e}"));
        assert_eq!(
            compiled.matches(&event),
            *expected,
            "{group}[{i}]: {pattern} against {event}"
        );
    }
}

// "Amazon EventBridge event patterns" (field and value matching), "Arrays in Amazon
// EventBridge event patterns", "Matching null values and empty strings"; RulerTest
// (WHEN_WeTryReallySimpleRules, WHEN_WeWriteRulesToMatchVariousFieldCombos);
// JsonRuleCompilerTest (testBigNumbers, testVariantForms); MachineTest
// (testDuplicateKeyLastOneWins, testIpExactMatch).
#[rustfmt::skip]
const EXACT: &[Case] = &[
    (r#"{"source": ["aws.ec2"]}"#, r#"{"source": "aws.ec2"}"#, true),
    (r#"{"source": ["aws.ec2"]}"#, r#"{"source": "aws.ec2x"}"#, false),
    (r#"{"source": ["aws.ec2"]}"#, r#"{"source": "AWS.EC2"}"#, false),
    (r#"{"source": ["aws.ec2", "aws.fargate"]}"#, r#"{"source": "aws.fargate"}"#, true),
    (r#"{"source": ["aws.ec2"]}"#, r#"{"detail": {}}"#, false),
    (r#"{"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"], "detail": {"state": ["terminated"]}}"#, r#"{"version": "0", "source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "region": "us-west-1", "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"], "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated"}}"#, true),
    (r#"{"source": ["aws.ec2"], "detail": {"state": ["terminated"]}}"#, r#"{"source": "aws.ec2", "detail": {"state": "running"}}"#, false),
    (r#"{"a": ["x"]}"#, r#"{"a": "x", "b": 1, "c": {"d": [1, 2]}}"#, true),
    (r#"{"detail": {"state": ["x"]}}"#, r#"{"state": "x"}"#, false),
    (r#"{"state": ["x"]}"#, r#"{"detail": {"state": "x"}}"#, false),
    (r#"{"detail": {"responseElements": [null]}}"#, r#"{"detail": {"eventVersion": "", "responseElements": null}}"#, true),
    (r#"{"detail": {"eventVersion": [""]}}"#, r#"{"detail": {"eventVersion": ""}}"#, true),
    (r#"{"a": [null]}"#, r#"{"a": ""}"#, false),
    (r#"{"a": [""]}"#, r#"{"a": null}"#, false),
    (r#"{"a": [null]}"#, r#"{}"#, false),
    (r#"{"Image": {"Animated": [false]}}"#, r#"{"Image": {"Animated": false}}"#, true),
    (r#"{"Image": {"Animated": [true]}}"#, r#"{"Image": {"Animated": false}}"#, false),
    (r#"{"a": [true]}"#, r#"{"a": "true"}"#, false),
    (r#"{"a": ["true"]}"#, r#"{"a": true}"#, false),
    (r#"{"a": [1]}"#, r#"{"a": 1}"#, true),
    (r#"{"a": [1]}"#, r#"{"a": "1"}"#, false),
    (r#"{"a": ["1"]}"#, r#"{"a": 1}"#, false),
    (r#"{"x": [1]}"#, r#"{"x": true}"#, false),
    (r#"{"x": [300]}"#, r#"{"x": 300.0}"#, true),
    (r#"{"x": [300]}"#, r#"{"x": 3.0e2}"#, true),
    (r#"{"x": [300]}"#, r#"{"x": 300.1}"#, false),
    (r#"{"x": [3.018e2]}"#, r#"{"x": 301.8}"#, true),
    (r#"{"a": [133.3]}"#, r#"{"a": 133.3}"#, true),
    (r#"{"account": [123456789012]}"#, r#"{"account": 123456789012}"#, true),
    (r#"{"id": [9007199254740993]}"#, r#"{"id": 9007199254740992}"#, false),
    (r#"{"id": [-5]}"#, r#"{"id": -5.0}"#, true),
    (r#"{"resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f", "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f"]}"#, r#"{"resources": ["arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup", "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"]}"#, true),
    (r#"{"resources": ["arn:1", "arn:2"]}"#, r#"{"resources": ["arn:3", "arn:4"]}"#, false),
    (r#"{"tags": ["admin"]}"#, r#"{"tags": ["user", "admin"]}"#, true),
    (r#"{"tags": ["superadmin"]}"#, r#"{"tags": ["user", "admin"]}"#, false),
    (r#"{"b": ["192.0.2.0"]}"#, r#"{"b": "192.0.2.0"}"#, true),
    (r#"{"ip": ["::1"]}"#, r#"{"ip": "0:0:0:0:0:0:0:1"}"#, true),
    (r#"{"ip": ["2400:6500:FF00::36FB:1F80"]}"#, r#"{"ip": "2400:6500:ff00::36fb:1f80"}"#, true),
    (r#"{"ip": ["2400:6500:FF00::36FB:1F80"]}"#, r#"{"ip": "2400:6500:FF00::36FB:1F81"}"#, false),
    (r#"{"x": ["y"], "x": ["z"]}"#, r#"{"x": "y"}"#, false),
    (r#"{"x": ["y"], "x": ["z"]}"#, r#"{"x": "z"}"#, true),
    (r#"{"detail.state": ["x"]}"#, r#"{"detail": {"state": "x"}}"#, false),
    (r#"{"detail.state": ["x"]}"#, r#"{"detail.state": "x"}"#, true),
];

// "Content filtering in Amazon EventBridge event patterns" (prefix, suffix and their
// equals-ignore-case forms); MachineTest (testPrefixMatching, testSuffixMatching,
// testSuffixChineseMatch); RulerTest (WHEN_RulesFromReadmeAreTried); ACMachineTest
// (testPrefixEqualsIgnoreCase, testSuffixEqualsIgnoreCase).
#[rustfmt::skip]
const PREFIX_SUFFIX: &[Case] = &[
    (r#"{"time": [{"prefix": "2017-10-02"}]}"#, r#"{"time": "2017-10-02T18:43:48Z"}"#, true),
    (r#"{"time": [{"prefix": "2017-10-02"}]}"#, r#"{"time": "2017-10-03T18:43:48Z"}"#, false),
    (r#"{"a": [{"prefix": "zoo"}]}"#, r#"{"a": "zookeeper"}"#, true),
    (r#"{"a": [{"prefix": "zoo"}]}"#, r#"{"a": "zoo"}"#, true),
    (r#"{"a": [{"prefix": "zoo"}]}"#, r#"{"a": "zo"}"#, false),
    (r#"{"a": [{"prefix": "1"}]}"#, r#"{"a": 123}"#, false),
    (r#"{"a": [{"prefix": ""}]}"#, r#"{"a": "anything"}"#, true),
    (r#"{"a": [{"prefix": ""}]}"#, r#"{"a": 5}"#, false),
    (r#"{"a": [{"prefix": "al"}, "albert"]}"#, r#"{"a": "albert"}"#, true),
    (r#"{"FileName": [{"suffix": ".png"}]}"#, r#"{"FileName": "image.png"}"#, true),
    (r#"{"FileName": [{"suffix": ".png"}]}"#, r#"{"FileName": "image.PNG"}"#, false),
    (r#"{"FileName": [{"suffix": ".png"}]}"#, r#"{"FileName": ".png"}"#, true),
    (r#"{"b": [{"suffix": "txt"}]}"#, r#"{"b": "Texttxt"}"#, true),
    (r#"{"b": [{"suffix": "txt"}]}"#, r#"{"b": ["a.doc", "b.txt"]}"#, true),
    (r#"{"b": [{"suffix": "txt"}]}"#, r#"{"b": "txt.doc"}"#, false),
    (r#"{"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}}"#, r#"{"detail": {"service": "eventbridge"}}"#, true),
    (r#"{"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}}"#, r#"{"detail": {"service": "EVENTBRIDGE"}}"#, true),
    (r#"{"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}}"#, r#"{"detail": {"service": "xeventb"}}"#, false),
    (r#"{"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}"#, r#"{"FileName": "A.PNG"}"#, true),
    (r#"{"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}"#, r#"{"FileName": "a.pn"}"#, false),
    (r#"{"state": [{"prefix": {"equals-ignore-case": "RuNn"}}]}"#, r#"{"state": "running"}"#, true),
    (r#"{"state": [{"suffix": {"equals-ignore-case": "nInG"}}]}"#, r#"{"state": "running"}"#, true),
    (r#"{"status": {"weatherText": [{"suffix": "统治者"}]}}"#, r#"{"status": {"weatherText": "事件统治者", "pm25": 23}}"#, true),
    (r#"{"a": [{"suffix": {"equals-ignore-case": "ÇA"}}]}"#, r#"{"a": "voilà ça"}"#, true),
    (r#"{"a": [{"prefix": {"equals-ignore-case": "ÉT"}}]}"#, r#"{"a": "été"}"#, true),
];

// "Content filtering in Amazon EventBridge event patterns" (equals-ignore-case); RulerTest
// (WHEN_WeTryEqualsIgnoreCaseRules); MachineTest (testEqualsIgnoreCaseMatching).
#[rustfmt::skip]
const EQUALS_IGNORE_CASE: &[Case] = &[
    (r#"{"a": [{"equals-ignore-case": "aBc"}]}"#, r#"{"a": "ABC"}"#, true),
    (r#"{"a": [{"equals-ignore-case": "aBc"}]}"#, r#"{"a": "abc"}"#, true),
    (r#"{"a": [{"equals-ignore-case": "aBc"}]}"#, r#"{"a": "aabc"}"#, false),
    (r#"{"a": [{"equals-ignore-case": "aBc"}]}"#, r#"{"a": "ab"}"#, false),
    (r#"{"a": [{"equals-ignore-case": "1"}]}"#, r#"{"a": 1}"#, false),
    (r#"{"a": [{"equals-ignore-case": "aBc"}], "b": [{"equals-ignore-case": "Def"}], "c": [{"equals-ignore-case": "xyZ"}]}"#, r#"{"a": "ABC", "b": "defx", "c": "xYz", "d": "rst"}"#, false),
    (r#"{"a": [{"equals-ignore-case": "aBc"}], "b": [{"equals-ignore-case": "Def"}], "c": [{"equals-ignore-case": "xyZ"}]}"#, r#"{"a": "ABC", "b": "def", "c": "xYz", "d": "rst"}"#, true),
    (r#"{"detail-type": [{"equals-ignore-case": "ec2 instance state-change notification"}]}"#, r#"{"detail-type": ["EC2 Instance State-change Notification"]}"#, true),
    (r#"{"a": [{"equals-ignore-case": ""}]}"#, r#"{"a": ""}"#, true),
    (r#"{"a": [{"equals-ignore-case": "ÉTÉ"}]}"#, r#"{"a": "été"}"#, true),
];

// "Content filtering in Amazon EventBridge event patterns" (wildcard); RulerTest
// (WHEN_WeTryWildcardRules); MachineTest (testWildcardMatching); WildcardParserTest
// (escapes).
#[rustfmt::skip]
const WILDCARD: &[Case] = &[
    (r#"{"a": [{"wildcard": "*bc"}]}"#, r#"{"a": "bc"}"#, true),
    (r#"{"a": [{"wildcard": "*bc"}]}"#, r#"{"a": "abcbc"}"#, true),
    (r#"{"a": [{"wildcard": "*bc"}]}"#, r#"{"a": "xyz"}"#, false),
    (r#"{"b": [{"wildcard": "d*f"}]}"#, r#"{"b": "dexef"}"#, true),
    (r#"{"b": [{"wildcard": "d*f"}]}"#, r#"{"b": "df"}"#, true),
    (r#"{"b": [{"wildcard": "d*f"}]}"#, r#"{"b": "de"}"#, false),
    (r#"{"b": [{"wildcard": "d*f"}]}"#, r#"{"b": "deeeefx"}"#, false),
    (r#"{"c": [{"wildcard": "xy*"}]}"#, r#"{"c": "xy"}"#, true),
    (r#"{"c": [{"wildcard": "xy*"}]}"#, r#"{"c": "abcxyz"}"#, false),
    (r#"{"d": [{"wildcard": "12*4*"}]}"#, r#"{"d": "12345"}"#, true),
    (r#"{"d": [{"wildcard": "12*4*"}]}"#, r#"{"d": "1235"}"#, false),
    (r#"{"a": [{"wildcard": "*"}]}"#, r#"{"a": ""}"#, true),
    (r#"{"a": [{"wildcard": "*"}]}"#, r#"{"a": 5}"#, false),
    (r#"{"a": [{"wildcard": "a*b*c"}]}"#, r#"{"a": "aXbYc"}"#, true),
    (r#"{"a": [{"wildcard": "a*b*c"}]}"#, r#"{"a": "acb"}"#, false),
    (r#"{"a": [{"wildcard": "ab*ba"}]}"#, r#"{"a": "aba"}"#, false),
    (r#"{"a": [{"wildcard": "ab*ba"}]}"#, r#"{"a": "abba"}"#, true),
    (r#"{"a": [{"wildcard": "abc"}]}"#, r#"{"a": "abcd"}"#, false),
    (r#"{"a": [{"wildcard": "a\\*c"}]}"#, r#"{"a": "a*c"}"#, true),
    (r#"{"a": [{"wildcard": "a\\*c"}]}"#, r#"{"a": "abc"}"#, false),
    (r#"{"a": [{"wildcard": "a\\\\c"}]}"#, r#"{"a": "a\\c"}"#, true),
    (r#"{"a": [{"wildcard": "a\\\\*"}]}"#, r#"{"a": "a\\xyz"}"#, true),
    (r#"{"a": [{"wildcard": "a\\\\*"}]}"#, r#"{"a": "axyz"}"#, false),
    (r#"{"a": [{"wildcard": "a\\**"}]}"#, r#"{"a": "a*bc"}"#, true),
    (r#"{"a": [{"wildcard": "a\\**"}]}"#, r#"{"a": "abc"}"#, false),
    (r#"{"source": [{"wildcard": "Simple*Service"}]}"#, r#"{"source": "SimpleNotificationService"}"#, true),
    (r#"{"f": [{"wildcard": "*.png"}]}"#, r#"{"f": ["x.jpg", "dir/y.png"]}"#, true),
    (r#"{"f": [{"wildcard": "dir/*.png"}]}"#, r#"{"f": "other/y.png"}"#, false),
    (r#"{"a": [{"wildcard": "事*者"}]}"#, r#"{"a": "事件统治者"}"#, true),
];

// "Content filtering in Amazon EventBridge event patterns" (anything-but and its forms);
// RulerTest (WHEN_WeTryAnythingButRules); ACMachineTest (testAnythingButPrefix[Set],
// testAnythingButSuffix[Set], testAnythingButEqualsIgnoreCase, testAnythingButWildcard[Set]);
// MachineTest (testCIDRRuleWithMatchingAnythingBut*); SNS "String value matching".
#[rustfmt::skip]
const ANYTHING_BUT: &[Case] = &[
    (r#"{"detail": {"state": [{"anything-but": "initializing"}]}}"#, r#"{"detail": {"state": "running"}}"#, true),
    (r#"{"detail": {"state": [{"anything-but": "initializing"}]}}"#, r#"{"detail": {"state": "initializing"}}"#, false),
    (r#"{"detail": {"state": [{"anything-but": "initializing"}]}}"#, r#"{"detail": {}}"#, false),
    (r#"{"state": [{"anything-but": ["stopped", "overloaded"]}]}"#, r#"{"state": "running"}"#, true),
    (r#"{"state": [{"anything-but": ["stopped", "overloaded"]}]}"#, r#"{"state": "stopped"}"#, false),
    (r#"{"x": [{"anything-but": 123}]}"#, r#"{"x": 124}"#, true),
    (r#"{"x": [{"anything-but": 123}]}"#, r#"{"x": 123}"#, false),
    (r#"{"x": [{"anything-but": 123}]}"#, r#"{"x": 123.0}"#, false),
    (r#"{"x": [{"anything-but": [100, 200, 300]}]}"#, r#"{"x": 150}"#, true),
    (r#"{"x": [{"anything-but": [100, 200, 300]}]}"#, r#"{"x": 200}"#, false),
    (r#"{"b": [{"anything-but": [111, 222, 333]}]}"#, r#"{"b": "444"}"#, true),
    (r#"{"b": [{"anything-but": [111, 222, 333]}]}"#, r#"{"b": "111"}"#, true),
    (r#"{"c": [{"anything-but": "zdd"}]}"#, r#"{"c": 5}"#, true),
    (r#"{"c": [{"anything-but": "zdd"}]}"#, r#"{"c": null}"#, true),
    (r#"{"i": [{"anything-but": ["rugby", "tennis"]}]}"#, r#"{"i": ["rugby", "baseball"]}"#, true),
    (r#"{"i": [{"anything-but": ["rugby", "tennis"]}]}"#, r#"{"i": ["rugby"]}"#, false),
    (r#"{"i": [{"anything-but": ["rugby", "tennis"]}]}"#, r#"{"i": ["rugby", "tennis"]}"#, false),
    (r#"{"i": [{"anything-but": "x"}]}"#, r#"{"i": []}"#, false),
    (r#"{"i": [{"anything-but": "x"}]}"#, r#"{"i": {"y": 1}}"#, false),
    (r#"{"price": [{"anything-but": [100, 500]}]}"#, r#"{"price": [100, 50]}"#, true),
    (r#"{"a": [{"anything-but": {"prefix": "$"}}]}"#, r#"{"a": "value$"}"#, true),
    (r#"{"a": [{"anything-but": {"prefix": "$"}}]}"#, r#"{"a": "$notvalue"}"#, false),
    (r#"{"a": [{"anything-but": {"prefix": ["$", "%"]}}]}"#, r#"{"a": "notvalue%"}"#, true),
    (r#"{"a": [{"anything-but": {"prefix": ["$", "%"]}}]}"#, r#"{"a": "%notvalue"}"#, false),
    (r#"{"a": [{"anything-but": {"prefix": "1"}}]}"#, r#"{"a": 123}"#, true),
    (r#"{"Region": [{"anything-but": {"prefix": "us-"}}]}"#, r#"{"Region": "eu-west-1"}"#, true),
    (r#"{"a": [{"anything-but": {"suffix": "$"}}]}"#, r#"{"a": "value$"}"#, false),
    (r#"{"a": [{"anything-but": {"suffix": "$"}}]}"#, r#"{"a": "$notvalue"}"#, true),
    (r#"{"a": [{"anything-but": {"suffix": ["$", "%"]}}]}"#, r#"{"a": "notvalue%"}"#, false),
    (r#"{"a": [{"anything-but": {"suffix": ["$", "%"]}}]}"#, r#"{"a": "%notvalue"}"#, true),
    (r#"{"a": [{"anything-but": {"equals-ignore-case": ["yes", "please"]}}]}"#, r#"{"a": "value"}"#, true),
    (r#"{"a": [{"anything-but": {"equals-ignore-case": ["yes", "please"]}}]}"#, r#"{"a": "YES"}"#, false),
    (r#"{"a": [{"anything-but": {"equals-ignore-case": ["yes", "please"]}}]}"#, r#"{"a": "pLease"}"#, false),
    (r#"{"b": [{"anything-but": {"equals-ignore-case": "no"}}]}"#, r#"{"b": "No"}"#, false),
    (r#"{"b": [{"anything-but": {"equals-ignore-case": "no"}}]}"#, r#"{"b": "No!"}"#, true),
    (r#"{"a": [{"anything-but": {"wildcard": "*foo*"}}]}"#, r#"{"a": "foo"}"#, false),
    (r#"{"a": [{"anything-but": {"wildcard": "*foo*"}}]}"#, r#"{"a": "barfoobar"}"#, false),
    (r#"{"a": [{"anything-but": {"wildcard": "*foo*"}}]}"#, r#"{"a": "barfobarobar"}"#, true),
    (r#"{"a": [{"anything-but": {"wildcard": ["*foo*", "*bar*"]}}]}"#, r#"{"a": "fobaor"}"#, true),
    (r#"{"a": [{"anything-but": {"wildcard": ["*foo*", "*bar*"]}}]}"#, r#"{"a": "sbars"}"#, false),
    (r#"{"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}"#, r#"{"FilePath": "/usr/lib/x.so"}"#, false),
    (r#"{"ip": [{"anything-but": "10.0.1.200"}]}"#, r#"{"ip": "10.0.1.200"}"#, false),
    (r#"{"ip": [{"anything-but": {"prefix": "10.0."}}]}"#, r#"{"ip": "10.0.1.200"}"#, false),
    (r#"{"ip": [{"anything-but": "::1"}]}"#, r#"{"ip": "0::1"}"#, false),
    (r#"{"u": {"s": [{"anything-but": "banned"}], "n": [{"exists": true}]}}"#, r#"{"u": [{"n": "alice", "s": "banned"}, {"n": "bob", "s": "active"}]}"#, true),
    (r#"{"a": [{"anything-but": ["dad0", "dad1", "dad2"]}], "b": [{"anything-but": [111, 222, 333]}], "c": [{"anything-but": "zdd"}], "d": [{"anything-but": 444}], "z": [{"numeric": [">", 0, "<", 1]}], "w": [{"anything-but": {"prefix": "zax"}}]}"#, r#"{"a": "child1", "b": "444", "c": "child1", "d": 123, "w": "xaz", "z": 0.001}"#, true),
    (r#"{"a": [{"anything-but": ["dad0", "dad1", "dad2"]}], "b": [{"anything-but": [111, 222, 333]}], "c": [{"anything-but": "zdd"}], "d": [{"anything-but": 444}], "z": [{"numeric": [">", 0, "<", 1]}], "w": [{"anything-but": {"prefix": "zax"}}]}"#, r#"{"a": "child1", "b": "444", "c": "child1", "d": 123, "w": "zaxonie", "z": 0.001}"#, false),
];

// "Content filtering in Amazon EventBridge event patterns" (numeric); RulerTest
// (WHEN_WeWriteRulesToMatchVariousFieldCombos); MachineTest (testNumericMatch); SNS
// "Numeric value matching".
#[rustfmt::skip]
const NUMERIC: &[Case] = &[
    (r#"{"c": [{"numeric": [">", 0, "<=", 5]}]}"#, r#"{"c": 5}"#, true),
    (r#"{"c": [{"numeric": [">", 0, "<=", 5]}]}"#, r#"{"c": 0}"#, false),
    (r#"{"c": [{"numeric": [">", 0, "<=", 5]}]}"#, r#"{"c": 0.0001}"#, true),
    (r#"{"c": [{"numeric": [">", 0, "<=", 5]}]}"#, r#"{"c": 5.0000001}"#, false),
    (r#"{"c": [{"numeric": [">", 0, "<=", 5]}]}"#, r#"{"c": -1}"#, false),
    (r#"{"d": [{"numeric": ["<", 10]}]}"#, r#"{"d": 9.999}"#, true),
    (r#"{"d": [{"numeric": ["<", 10]}]}"#, r#"{"d": 10}"#, false),
    (r#"{"x": [{"numeric": ["=", 3.018e2]}]}"#, r#"{"x": 301.8}"#, true),
    (r#"{"x": [{"numeric": ["=", 3.018e2]}]}"#, r#"{"x": 301.81}"#, false),
    (r#"{"a": [{"numeric": ["=", 0]}]}"#, r#"{"a": 0}"#, true),
    (r#"{"b": [{"numeric": ["<", 0]}]}"#, r#"{"b": -0.1}"#, true),
    (r#"{"c": [{"numeric": ["<=", 0]}]}"#, r#"{"c": 0}"#, true),
    (r#"{"x": [{"numeric": [">", 0]}]}"#, r#"{"x": 1}"#, true),
    (r#"{"y": [{"numeric": [">=", 0]}]}"#, r#"{"y": 0}"#, true),
    (r#"{"y": [{"numeric": [">", 0]}]}"#, r#"{"y": 0}"#, false),
    (r#"{"z": [{"numeric": [">", 0, "<", 1]}]}"#, r#"{"z": 0.1}"#, true),
    (r#"{"z": [{"numeric": [">", 0, "<", 1]}]}"#, r#"{"z": 1}"#, false),
    (r#"{"z": [{"numeric": [">=", 0, "<=", 1]}]}"#, r#"{"z": 1}"#, true),
    (r#"{"c": [{"numeric": [">", 0]}]}"#, r#"{"c": "5"}"#, false),
    (r#"{"c": [{"numeric": [">", 0]}]}"#, r#"{"c": true}"#, false),
    (r#"{"vals": [{"numeric": [">", 0, "<", 10]}]}"#, r#"{"vals": [100, 5, 200]}"#, true),
    (r#"{"vals": [{"numeric": [">", 0, "<", 10]}]}"#, r#"{"vals": [100, 200]}"#, false),
    (r#"{"big": [{"numeric": [">", 5e9]}]}"#, r#"{"big": 6e9}"#, true),
    (r#"{"big": [{"numeric": ["<", -5e9]}]}"#, r#"{"big": -1e12}"#, true),
    (r#"{"Image": {"Width": [{"numeric": ["<", 1000]}], "Height": [{"numeric": ["<=", 600]}], "Title": [{"anything-but": "View from 15th Flood"}], "Thumbnail": {"Url": [{"prefix": "http"}], "Height": [{"numeric": [">", 124, "<", 126]}], "Width": [{"numeric": [">=", 99.999, "<=", 100]}]}, "Animated": [false]}}"#, r#"{"Image": {"Width": 800, "Height": 600, "Title": "View from 15th Floor", "Thumbnail": {"Url": "http://www.example.com/image/481989943", "Height": 125, "Width": 100}, "Animated": false, "IDs": [116, 943, 234, 38793]}}"#, true),
    (r#"{"Image": {"Thumbnail": {"Width": [{"numeric": [">=", 100.00001, "<=", 1001]}]}}}"#, r#"{"Image": {"Thumbnail": {"Width": 100}}}"#, false),
    (r#"{"price_usd": [{"numeric": ["=", 301.5]}]}"#, r#"{"price_usd": 3.015e2}"#, true),
    (r#"{"price_usd": [{"numeric": [">", 0, "<=", 150]}]}"#, r#"{"price_usd": 150}"#, true),
];

// "Content filtering in Amazon EventBridge event patterns" (exists); the event-ruler
// README ("Exists matching"); RulerTest (WHEN_WeTryToMatchExistsRules); MachineTest
// (testExists); correctness-cases.json ("empty prim array").
#[rustfmt::skip]
const EXISTS: &[Case] = &[
    (r#"{"a": [{"exists": true}]}"#, r#"{"a": 1}"#, true),
    (r#"{"a": [{"exists": true}]}"#, r#"{"b": 2}"#, false),
    (r#"{"b": [{"exists": false}]}"#, r#"{"a": 1}"#, true),
    (r#"{"b": [{"exists": false}]}"#, r#"{"b": 2}"#, false),
    (r#"{"a": [{"exists": true}]}"#, r#"{"a": null}"#, true),
    (r#"{"a": [{"exists": false}]}"#, r#"{"a": null}"#, false),
    (r#"{"a": [{"exists": true}]}"#, r#"{"a": ""}"#, true),
    (r#"{"detail": {"state": [{"exists": true}]}}"#, r#"{"detail": {"state": "pending"}}"#, true),
    (r#"{"detail": {"state": [{"exists": true}]}}"#, r#"{"detail": {"c-count": {"c1": 100}}}"#, false),
    (r#"{"detail": {"c-count": [{"exists": true}]}}"#, r#"{"detail": {"c-count": {"c1": 100}}}"#, false),
    (r#"{"detail": {"c-count": [{"exists": false}]}}"#, r#"{"detail": {"c-count": {"c1": 100}}}"#, true),
    (r#"{"a": [{"exists": true}]}"#, r#"{"a": []}"#, false),
    (r#"{"a": [{"exists": false}]}"#, r#"{"a": []}"#, true),
    (r#"{"a": [{"exists": true}]}"#, r#"{"a": ["x"]}"#, true),
    (r#"{"a": [{"exists": true}]}"#, r#"{"a": [{"x": 1}]}"#, false),
    (r#"{"a": {"b": [{"exists": false}]}}"#, r#"{}"#, true),
    (r#"{"a": {"b": [{"exists": false}]}}"#, r#"{"a": "scalar"}"#, true),
    (r#"{"a": {"b": [{"exists": false}]}}"#, r#"{"a": {"b": 1}}"#, false),
    (r#"{"a": {"b": [{"exists": true}]}}"#, r#"{"a": "scalar"}"#, false),
    (r#"{"a": ["x", {"exists": false}]}"#, r#"{}"#, true),
    (r#"{"a": ["x", {"exists": false}]}"#, r#"{"a": "x"}"#, true),
    (r#"{"a": ["x", {"exists": false}]}"#, r#"{"a": "y"}"#, false),
    (r#"{"d": {"name": [{"exists": true}], "type": [{"exists": true}]}}"#, r#"{"d": {"name": [], "type": "x"}}"#, false),
];

// "Content filtering in Amazon EventBridge event patterns" (IP address matching);
// MachineTest (CIDRTest, testIPAddressOfCIDRIsEqualToMaximumOfRange); SNS "String value
// matching" (IP address matching).
#[rustfmt::skip]
const CIDR: &[Case] = &[
    (r#"{"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]}}"#, r#"{"detail": {"sourceIPAddress": "10.0.0.33"}}"#, true),
    (r#"{"source_ip": [{"cidr": "10.0.0.0/24"}]}"#, r#"{"source_ip": "10.0.0.0"}"#, true),
    (r#"{"source_ip": [{"cidr": "10.0.0.0/24"}]}"#, r#"{"source_ip": "10.0.0.255"}"#, true),
    (r#"{"source_ip": [{"cidr": "10.0.0.0/24"}]}"#, r#"{"source_ip": "10.1.1.0"}"#, false),
    (r#"{"ip": [{"cidr": "10.0.0.0/8"}]}"#, r#"{"ip": "10.255.255.255"}"#, true),
    (r#"{"ip": [{"cidr": "10.0.0.0/8"}]}"#, r#"{"ip": "11.0.0.0"}"#, false),
    (r#"{"s": [{"cidr": "220.160.153.171/31"}]}"#, r#"{"s": "220.160.153.170"}"#, true),
    (r#"{"s": [{"cidr": "220.160.153.171/31"}]}"#, r#"{"s": "220.160.153.171"}"#, true),
    (r#"{"s": [{"cidr": "220.160.153.171/31"}]}"#, r#"{"s": "220.160.153.169"}"#, false),
    (r#"{"s": [{"cidr": "220.160.153.171/31"}]}"#, r#"{"s": "220.160.153.172"}"#, false),
    (r#"{"s": [{"cidr": "220.160.154.255/24"}]}"#, r#"{"s": "220.160.154.0"}"#, true),
    (r#"{"s": [{"cidr": "220.160.154.255/24"}]}"#, r#"{"s": "220.160.153.255"}"#, false),
    (r#"{"s": [{"cidr": "1.2.3.4/32"}]}"#, r#"{"s": "1.2.3.4"}"#, true),
    (r#"{"s": [{"cidr": "1.2.3.4/32"}]}"#, r#"{"s": "1.2.3.5"}"#, false),
    (r#"{"s": [{"cidr": "0.0.0.0/0"}]}"#, r#"{"s": "8.8.8.8"}"#, true),
    (r#"{"s": [{"cidr": "0.0.0.0/0"}]}"#, r#"{"s": "::1"}"#, false),
    (r#"{"s": [{"cidr": "2001:db8::/32"}]}"#, r#"{"s": "2001:db8:1::1"}"#, true),
    (r#"{"s": [{"cidr": "2001:db8::/32"}]}"#, r#"{"s": "2001:db9::1"}"#, false),
    (r#"{"s": [{"cidr": "::/0"}]}"#, r#"{"s": "::1"}"#, true),
    (r#"{"s": [{"cidr": "2400:6500:FF00::36FB:1F80/122"}]}"#, r#"{"s": "2400:6500:ff00::36fb:1fbf"}"#, true),
    (r#"{"s": [{"cidr": "2400:6500:FF00::36FB:1F80/122"}]}"#, r#"{"s": "2400:6500:ff00::36fb:1fc0"}"#, false),
    (r#"{"s": [{"cidr": "10.0.0.0/8"}]}"#, r#"{"s": "foo"}"#, false),
    (r#"{"s": [{"cidr": "10.0.0.0/8"}]}"#, r#"{"s": 10}"#, false),
    (r#"{"s": [{"cidr": "10.0.0.0/8"}]}"#, r#"{"s": ["192.168.0.1", "10.1.2.3"]}"#, true),
];

// "Arrays in Amazon EventBridge event patterns"; the event-ruler README ("JSON Array
// Matching"); RulerTest (WHEN_JSONContainsArrays_THEN_RulerNoCompileMatchesWork);
// ACMachineTest (songsACTest, intensitiesACTest, testACWithExistFalseRule);
// correctness-cases.json; the SNS guide's payload-filtering example (S3 Records).
const EMPLOYEES: &str = r#"{"employees": [[{"firstName": "John", "lastName": "Doe", "ids": [1234, 1000, 9999]}, {"firstName": "Anna", "lastName": "Smith"}], [{"firstName": "Peter", "lastName": "Jones", "ids": []}]]}"#;
const SONGS: &str = r#"{"Year": 1966, "Genres": [{"Pop": true}, {"Classical": false}], "Songs": [{"Name": "Paperback Writer", "Writers": [{"First": "John", "Last": "Lennon"}, {"First": "Paul", "Last": "McCartney"}]}, {"Name": "Paint It Black", "Writers": [{"First": "Mick", "Last": "Jagger"}, {"First": "Keith", "Last": "Richards"}]}]}"#;
const TASKS: &str = r#"{"requestContext": {"taskInstances": [{"taskInstanceState": "ACTIVE", "provider": {"id": "XXXX"}, "resources": [{"legacyFocusCategory": "Focus"}]}, {"taskInstanceState": "InACTIVE", "provider": {"id": "Other"}, "resources": [{"additionalContext": {"capabilityInterfaces": [{"interfaceName": "Dummy"}]}}]}]}}"#;
#[rustfmt::skip]
const ARRAYS: &[Case] = &[
    (r#"{"employees": {"firstName": ["Anna"]}}"#, EMPLOYEES, true),
    (r#"{"employees": {"firstName": ["John"], "ids": [1000]}}"#, EMPLOYEES, true),
    (r#"{"employees": {"firstName": ["Anna"], "ids": [{"exists": false}]}}"#, EMPLOYEES, true),
    (r#"{"employees": {"firstName": ["Peter"], "ids": [{"exists": false}]}}"#, EMPLOYEES, true),
    (r#"{"employees": {"firstName": ["Alice"]}}"#, EMPLOYEES, false),
    (r#"{"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}}"#, EMPLOYEES, false),
    (r#"{"employees": {"firstName": ["Anna"], "ids": [1000]}}"#, EMPLOYEES, false),
    (r#"{"employees": {"firstName": ["Anna"], "ids": [{"exists": true}]}}"#, EMPLOYEES, false),
    (r#"{"employees": ["b"]}"#, EMPLOYEES, false),
    (r#"{"a": ["b"]}"#, EMPLOYEES, false),
    (r#"{"Year": [1966], "Songs": {"Name": ["Paperback Writer"], "Writers": {"First": ["Paul"], "Last": ["McCartney"]}}}"#, SONGS, true),
    (r#"{"Genres": {"Pop": [true]}, "Songs": {"Name": ["Paint It Black"]}}"#, SONGS, true),
    (r#"{"Year": [1966], "Songs": {"Name": ["Paperback Writer"], "Writers": {"First": ["Mick"]}}}"#, SONGS, false),
    (r#"{"Songs": {"Writers": {"First": ["Mick"], "Last": ["McCartney"]}}}"#, SONGS, false),
    (r#"{"requestContext": {"taskInstances": {"taskInstanceState": ["ACTIVE"], "provider": {"id": ["XXXX"]}, "resources": {"additionalContext": {"capabilityInterfaces": {"interfaceName": [{"exists": false}]}}}}}}"#, TASKS, true),
    (r#"{"requestContext": {"taskInstances": {"taskInstanceState": ["InACTIVE"], "resources": {"additionalContext": {"capabilityInterfaces": {"interfaceName": [{"exists": false}]}}}}}}"#, TASKS, false),
    (r#"{"lines": {"points": [287.48116291799363], "points": {"pp": ["index0"]}}}"#, r#"{"lines": [{"intensities": [[0.5]], "points": [[[{"pp": "index0"}, 483.3474497412421, 287.48116291799363], [{"pp": "index1"}, 489.9999497412421, 299.99996291799363]]]}]}"#, true),
    (r#"{"lines": {"intensities": [0.5]}}"#, r#"{"lines": [{"intensities": [[0.5]]}]}"#, true),
    (r#"{"d": {"a": [{"exists": true}], "b": [{"exists": true}]}}"#, r#"{"d": [{"a": 1, "b": 2}]}"#, true),
    (r#"{"d": {"a": [{"exists": true}], "b": [{"exists": true}]}}"#, r#"{"d": [{"a": 1}, {"b": 2}]}"#, false),
    (r#"{"d": {"a": [{"exists": true}], "b": [{"exists": true}]}}"#, r#"{"d": [{"a": 1}, {"b": 2}, {"a": 3, "b": 4}]}"#, true),
    (r#"{"d": {"name": ["alice"], "status": ["active"]}}"#, r#"{"d": [{"name": "alice"}, {"status": "active"}]}"#, false),
    (r#"{"u": {"t": {"k": ["color"], "v": ["blue"]}}}"#, r#"{"u": [{"t": [{"k": "color", "v": "blue"}]}]}"#, true),
    (r#"{"u": {"t": {"k": ["color"], "v": ["blue"]}}}"#, r#"{"u": [{"t": [{"k": "color"}, {"v": "blue"}]}]}"#, false),
    (r#"{"d": {"name": [{"exists": true}], "info": {"x": ["1"]}}}"#, r#"{"d": [{"name": "alice"}, {"info": {"x": "1"}}]}"#, false),
    (r#"{"d": {"name": [{"exists": true}], "info": {"x": ["1"]}}}"#, r#"{"d": [{"name": "alice", "info": {"x": "1"}}]}"#, true),
    (r#"{"d": {"a": [{"exists": true}], "b": [{"exists": false}]}}"#, r#"{"d": [{"a": 1}]}"#, true),
    (r#"{"d": {"a": [{"exists": true}], "b": [{"exists": false}]}}"#, r#"{"d": [{"a": 1, "b": 2}]}"#, false),
    (r#"{"d": {"b": [{"exists": false}]}}"#, r#"{"d": [{"b": 1}, {"c": 2}]}"#, true),
    (r#"{"d": {"a": [{"exists": true}]}}"#, r#"{"d": []}"#, false),
    (r#"{"d": {"a": [{"exists": false}]}}"#, r#"{"d": []}"#, true),
    (r#"{"users": {"name": [{"exists": true}]}, "version": ["1"]}"#, r#"{"users": [{"name": "alice"}], "version": "1"}"#, true),
    (r#"{"d": {"a": ["target"], "b": ["found"]}}"#, r#"{"d": [{"a": "x"}, {"a": "target", "b": "found"}, {"a": "z"}]}"#, true),
    (r#"{"i": {"p": [{"numeric": [">", 0, "<", 100]}], "n": [{"exists": true}]}}"#, r#"{"i": [{"n": "w", "p": 50}, {"n": "g", "p": 200}]}"#, true),
    (r#"{"a": [2]}"#, r#"{"a": [[1, [2]]]}"#, true),
    (r#"{"d": ["x"]}"#, r#"{"d": [{"x": 1}]}"#, false),
    (r#"{"d": {"x": [1]}}"#, r#"{"d": [{"x": 1}, "loose", 7]}"#, true),
    (r#"{"Records": {"s3": {"object": {"key": [{"prefix": "auto-"}]}}, "eventName": [{"prefix": "ObjectCreated:"}]}}"#, r#"{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": [[{"key": "auto-insurance-2314.xml", "size": 17}]]}}, {"eventName": "ObjectRemoved:Delete", "s3": {"object": {"key": "home-insurance-2314.xml"}}}]}"#, true),
    (r#"{"Records": {"s3": {"object": {"key": [{"prefix": "auto-"}]}}, "eventName": [{"prefix": "ObjectCreated:"}]}}"#, r#"{"Records": [{"eventName": "ObjectRemoved:Delete", "s3": {"object": {"key": "auto-insurance-2314.xml"}}}, {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "home-insurance-2314.xml"}}}]}"#, false),
    (r#"{"a": [1]}"#, r#"[{"b": 2}, {"a": 1}]"#, true),
    (r#"{"a": [1]}"#, r#"[1, 2]"#, false),
];

// "Content filtering in Amazon EventBridge event patterns" (complex example with $or);
// the event-ruler README ("The $or Primitive"); JsonRuleCompilerTest
// (testBasicFunctionOfOrRelationshipRules); SNS "AND/OR logic".
const OR_DETAIL: &str = r#"{"detail": {"$or": [{"c-count": [{"numeric": [">", 0, "<=", 5]}]}, {"d-count": [{"numeric": ["<", 10]}]}, {"x-limit": [{"numeric": ["=", 3.018e2]}]}]}}"#;
const OR_SOURCE: &str = r#"{"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization", "ReadLatency"]}, {"namespace": ["AWS/EC2", "AWS/ES"]}]}"#;
const OR_PARALLEL: &str = r#"{"$or": [{"metricName": ["CPUUtilization", "ReadLatency"]}, {"namespace": ["AWS/EC2", "AWS/ES"]}], "detail": {"$or": [{"source": ["aws.cloudwatch"]}, {"detail-type": ["CloudWatch Alarm State Change"]}]}}"#;
const OR_NESTED: &str = r#"{"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization", "ReadLatency"]}, {"metricType": ["MetricType"], "namespace": ["AWS/EC2", "AWS/ES"], "$or": [{"metricId": [1234]}, {"spaceId": [1000]}]}, {"scope": ["Service"]}]}"#;
const OR_SNS_BODY: &str = r#"{"$or": [{"metricName": ["CPUUtilization", "ReadLatency"]}, {"namespace": ["AWS/EC2", "AWS/ES"]}], "detail": {"scope": ["Service"], "$or": [{"source": ["aws.cloudwatch"]}, {"type": ["CloudWatch Alarm State Change"]}]}}"#;
#[rustfmt::skip]
const OR: &[Case] = &[
    (OR_DETAIL, r#"{"detail": {"c-count": 10, "d-count": 3}}"#, true),
    (OR_DETAIL, r#"{"detail": {"c-count": 10, "d-count": 20}}"#, false),
    (OR_DETAIL, r#"{"detail": {"x-limit": 301.8}}"#, true),
    (OR_DETAIL, r#"{"c-count": 1}"#, false),
    (OR_SOURCE, r#"{"source": "aws.cloudwatch", "metricName": "CPUUtilization"}"#, true),
    (OR_SOURCE, r#"{"source": "aws.cloudwatch", "namespace": "AWS/ES"}"#, true),
    (OR_SOURCE, r#"{"metricName": "CPUUtilization"}"#, false),
    (OR_SOURCE, r#"{"source": "aws.cloudwatch", "metricName": "Other"}"#, false),
    (OR_PARALLEL, r#"{"namespace": "AWS/EC2", "detail": {"detail-type": "CloudWatch Alarm State Change"}}"#, true),
    (OR_PARALLEL, r#"{"namespace": "AWS/EC2", "detail": {"source": "aws.ec2"}}"#, false),
    (OR_PARALLEL, r#"{"detail": {"source": "aws.cloudwatch"}}"#, false),
    (OR_NESTED, r#"{"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/EC2", "spaceId": 1000}"#, true),
    (OR_NESTED, r#"{"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/EC2"}"#, false),
    (OR_NESTED, r#"{"source": "aws.cloudwatch", "scope": "Service"}"#, true),
    (OR_NESTED, r#"{"source": "aws.ec2", "scope": "Service"}"#, false),
    (OR_SNS_BODY, r#"{"metricName": "CPUUtilization", "detail": {"scope": "Service", "source": "aws.cloudwatch"}}"#, true),
    (OR_SNS_BODY, r#"{"namespace": "AWS/ES", "detail": {"scope": "Service", "source": "aws.cloudwatch"}}"#, true),
    (OR_SNS_BODY, r#"{"metricName": "CPUUtilization", "detail": {"scope": "Service", "type": "CloudWatch Alarm State Change"}}"#, true),
    (OR_SNS_BODY, r#"{"metricName": "CPUUtilization", "detail": {"scope": "aws.cloudwatch", "type": "CloudWatch Alarm State Change"}}"#, false),
    (OR_SNS_BODY, r#"{"metricName": "CPUUtilization", "detail": {"scope": "Service", "type": "CPUUtilization"}}"#, false),
    (OR_SNS_BODY, r#"{"metricName": "CPUUtilization", "detail": {"type": "CloudWatch Alarm State Change"}}"#, false),
    (OR_SNS_BODY, r#"{"metricName": "CPUUtilization", "scope": "Service"}"#, false),
    (r#"{"$or": [{"a": [{"exists": false}]}, {"a": ["x"]}]}"#, r#"{}"#, true),
    (r#"{"$or": [{"a": [{"exists": false}]}, {"a": ["x"]}]}"#, r#"{"a": "x"}"#, true),
    (r#"{"$or": [{"a": [{"exists": false}]}, {"a": ["x"]}]}"#, r#"{"a": "y"}"#, false),
    (r#"{"items": {"$or": [{"a": [1], "b": [2]}, {"c": [3]}]}}"#, r#"{"items": [{"a": 1}, {"b": 2}]}"#, false),
    (r#"{"items": {"$or": [{"a": [1], "b": [2]}, {"c": [3]}]}}"#, r#"{"items": [{"a": 1}, {"c": 3}]}"#, true),
];

// The event-ruler README's complex example and its sample event ("Ruler by Example").
const README_EVENT: &str = r#"{"version": "0", "id": "ddddd4-aaaa-7777-4444-345dd43cc333", "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "account": "012345679012", "time": "2017-10-02T16:24:49Z", "region": "us-east-1", "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"], "detail": {"c-count": 5, "d-count": 3, "x-limit": 301.8, "source-ip": "10.0.0.33", "instance-id": "i-000000aaaaaa00000", "state": "running"}}"#;
#[rustfmt::skip]
const COMPLEX: &[Case] = &[
    (r#"{"time": [{"prefix": "2017-10-02"}], "detail": {"state": [{"anything-but": "initializing"}], "c-count": [{"numeric": [">", 0, "<=", 5]}], "d-count": [{"numeric": ["<", 10]}], "x-limit": [{"anything-but": [100, 200, 300]}], "source-ip": [{"cidr": "10.0.0.0/8"}]}}"#, README_EVENT, true),
    (r#"{"time": [{"prefix": "2017-10-02"}], "detail": {"state": [{"anything-but": "running"}], "c-count": [{"numeric": [">", 0, "<=", 5]}]}}"#, README_EVENT, false),
    (r#"{"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}], "c-count": [{"numeric": [">", 0, "<=", 5]}], "d-count": [{"numeric": ["<", 10]}], "x-limit": [{"numeric": ["=", 3.018e2]}]}}"#, README_EVENT, true),
    (r#"{"detail": {"instance-id": [{"anything-but": {"suffix": "1234"}}]}}"#, README_EVENT, true),
    (r#"{"detail": {"state": [{"anything-but": {"equals-ignore-case": ["Stopped", "OverLoaded"]}}]}}"#, README_EVENT, true),
    (r#"{"detail-type": ["EC2 Instance State-change Notification"], "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"], "detail": {"state": ["initializing", "running"]}}"#, README_EVENT, true),
    (r#"{"detail": {"x-limit": [{"anything-but": [301.8]}]}}"#, README_EVENT, false),
];

#[test]
fn exact_values() {
    check("exact", EXACT);
}

#[test]
fn prefixes_and_suffixes() {
    check("prefix_suffix", PREFIX_SUFFIX);
}

#[test]
fn equals_ignore_case() {
    check("equals_ignore_case", EQUALS_IGNORE_CASE);
}

#[test]
fn wildcards() {
    check("wildcard", WILDCARD);
}

#[test]
fn anything_but() {
    check("anything_but", ANYTHING_BUT);
}

#[test]
fn numeric_ranges() {
    check("numeric", NUMERIC);
}

#[test]
fn exists() {
    check("exists", EXISTS);
}

#[test]
fn cidr_blocks() {
    check("cidr", CIDR);
}

#[test]
fn arrays_and_nesting() {
    check("arrays", ARRAYS);
}

#[test]
fn or() {
    check("or", OR);
}

#[test]
fn complex_patterns() {
    check("complex", COMPLEX);
}

#[test]
fn the_tables_are_large() {
    let total: usize = [
        EXACT,
        PREFIX_SUFFIX,
        EQUALS_IGNORE_CASE,
        WILDCARD,
        ANYTHING_BUT,
        NUMERIC,
        EXISTS,
        CIDR,
        ARRAYS,
        OR,
        COMPLEX,
    ]
    .iter()
    .map(|group| group.len())
    .sum();
    assert!(total >= 250, "{total} cases");
}

/// A pattern and a piece of the message it must be refused with.
type Refusal = (&'static str, &'static str);

fn check_refusals(
    group: &str,
    cases: &[Refusal],
    parse: impl Fn(&str) -> Result<(), PatternError>,
) {
    for (i, (pattern, expected)) in cases.iter().enumerate() {
        match parse(pattern) {
            Ok(()) => panic!("{group}[{i}]: {pattern} was accepted"),
            Err(e) => assert!(
                e.to_string().contains(expected),
                "{group}[{i}]: {pattern} was refused with {e:?}, not {expected:?}"
            ),
        }
    }
}

// JsonRuleCompilerTest (testCompile's bad patterns, testNumericExpressions,
// testExistsExpression); WildcardParserTest; CIDR parsing as in CIDRTest; the messages SNS
// returns for invalid filter policies; "Content filtering in Amazon EventBridge event
// patterns" ($or).
#[rustfmt::skip]
const REFUSED: &[Refusal] = &[
    ("[1, 2, 3]", "Pattern must be a JSON object"),
    ("\"text\"", "Pattern must be a JSON object"),
    ("not json", "Pattern is not valid JSON"),
    (r#"{"a": [{"numeric": ["=", 1E309]}]}"#, "Pattern is not valid JSON"),
    (r#"{"a": 1}"#, "\"a\" must be an object or an array (at a)"),
    (r#"{"key_a": "value_one"}"#, "\"key_a\" must be an object or an array"),
    (r#"{"key": {"suffix": "value"}}"#, "\"suffix\" must be an object or an array (at key.suffix)"),
    (r#"{"key": {"not-an-operator": "value"}}"#, "\"not-an-operator\" must be an object or an array"),
    (r#"{"a": null}"#, "\"a\" must be an object or an array"),
    ("{}", "Empty objects are not allowed"),
    (r#"{"foo": {}}"#, "Empty objects are not allowed (at foo)"),
    (r#"{"foo": []}"#, "Empty arrays are not allowed (at foo)"),
    (r#"{"key": [["value"]]}"#, "Match value must be String, number, true, false, null"),
    (r#"{"a": [{"x": 2}]}"#, "Unrecognized match type x (at a[0])"),
    (r#"{"key": [{"wrong-operator": true}]}"#, "Unrecognized match type wrong-operator"),
    (r#"{"a": [{"exactly": "child"}]}"#, "Unrecognized match type exactly"),
    (r#"{"a": [{}]}"#, "Match expression is empty"),
    (r#"{"key": [{"suffix": "value", "prefix": "value2"}]}"#, "Only one key allowed in match expression"),
    (r#"{"a": [{"prefix": "child", "foo": []}]}"#, "Only one key allowed in match expression"),
    (r#"{"a": [{"prefix": 3}]}"#, "prefix match pattern must be a string"),
    (r#"{"a": [{"prefix": null}]}"#, "prefix match pattern must be a string"),
    (r#"{"key": [{"suffix": 100}]}"#, "suffix match pattern must be a string"),
    (r#"{"key": [{"suffix": []}]}"#, "suffix match pattern must be a string"),
    (r#"{"key": [{"suffix": ["test", "test2"]}]}"#, "suffix match pattern must be a string"),
    (r#"{"a": [{"prefix": {"invalid-expression": ["abc"]}}]}"#, "prefix match pattern must be a string or an equals-ignore-case expression"),
    (r#"{"a": [{"prefix": {"equals-ignore-case": 5}}]}"#, "equals-ignore-case match pattern must be a string"),
    (r#"{"a": [{"prefix": {"equals-ignore-case": "abc", "test": "def"}}]}"#, "Only one key allowed in match expression"),
    (r#"{"a": [{"prefix": {"equals-ignore-case": "abc"}, "test": "def"}]}"#, "Only one key allowed in match expression"),
    (r#"{"a": [{"suffix": {"equals-ignore-case": ["abc"]}}]}"#, "equals-ignore-case match pattern must be a string"),
    (r#"{"a": [{"suffix": {}}]}"#, "Match expression is empty"),
    (r#"{"a": [{"equals-ignore-case": 5}]}"#, "equals-ignore-case match pattern must be a string"),
    (r#"{"a": [{"equals-ignore-case": ["abc"]}]}"#, "equals-ignore-case match pattern must be a string"),
    (r#"{"a": [{"wildcard": 5}]}"#, "wildcard match pattern must be a string"),
    (r#"{"a": [{"wildcard": ["abc"]}]}"#, "wildcard match pattern must be a string"),
    (r#"{"a": [{"wildcard": "a**"}]}"#, "consecutive wildcard characters at position 1"),
    (r#"{"a": [{"wildcard": "a\\bc"}]}"#, "invalid escape character at position 1"),
    (r#"{"a": [{"wildcard": "foo*bar\\"}]}"#, "invalid escape character at position 7"),
    (r#"{"a": [{"cidr": "foo"}]}"#, "one '/' is required"),
    (r#"{"a": [{"cidr": "10.0.0.0/8/8"}]}"#, "one '/' is required"),
    (r#"{"a": [{"cidr": "10.0.0.0/33"}]}"#, "IPv4 block is at most 32"),
    (r#"{"a": [{"cidr": "::/129"}]}"#, "IPv6 block is at most 128"),
    (r#"{"a": [{"cidr": "10.0.0/8"}]}"#, "\"10.0.0\" is not an IP address"),
    (r#"{"a": [{"cidr": "10.0.0.0/x"}]}"#, "the prefix length must be an integer"),
    (r#"{"a": [{"cidr": "10.0.0.0/-1"}]}"#, "the prefix length must be an integer"),
    (r#"{"a": [{"cidr": 24}]}"#, "cidr match pattern must be a string"),
    (r#"{"key": [{"exists": "no"}]}"#, "exists match pattern must be either true or false"),
    (r#"{"key": [{"exists": null}]}"#, "exists match pattern must be either true or false"),
    (r#"{"x": [{"exists": true, "extraKey": "extraValue"}]}"#, "Only one key allowed in match expression"),
    (r#"{"a": [{"anything-but": ["child0", 111, "child2"]}]}"#, "a list must hold only strings or only numbers"),
    (r#"{"a": [{"anything-but": [null]}]}"#, "a list must hold only strings or only numbers"),
    (r#"{"a": [{"anything-but": []}]}"#, "Empty arrays are not allowed"),
    (r#"{"a": [{"anything-but": true}]}"#, "anything-but match pattern must be a string, a number"),
    (r#"{"a": [{"anything-but": null}]}"#, "anything-but match pattern must be"),
    (r#"{"a": [{"anything-but": "child", "foo": []}]}"#, "Only one key allowed in match expression"),
    (r#"{"key": [{"anything-but": {"wrong-operator": null}}]}"#, "unsupported operator wrong-operator"),
    (r#"{"a": [{"anything-but": {"foo": "x"}}]}"#, "unsupported operator foo"),
    (r#"{"key": [{"anything-but": {"exists": false}}]}"#, "unsupported operator exists"),
    (r#"{"a": [{"anything-but": {"prefix": 27}}]}"#, "prefix takes a string or a list of strings"),
    (r#"{"key": [{"anything-but": {"prefix": false}}]}"#, "prefix takes a string or a list of strings"),
    (r#"{"a": [{"anything-but": {"prefix": ""}}]}"#, "an empty prefix is not allowed"),
    (r#"{"a": [{"anything-but": {"prefix": ["1", ""]}}]}"#, "an empty prefix is not allowed"),
    (r#"{"a": [{"anything-but": {"prefix": [1, 2, 3]}}]}"#, "prefix takes a string or a list of strings"),
    (r#"{"a": [{"anything-but": {"suffix": ""}}]}"#, "an empty suffix is not allowed"),
    (r#"{"a": [{"anything-but": {"suffix": []}}]}"#, "Empty arrays are not allowed"),
    (r#"{"a": [{"anything-but": {"prefix": "foo", "a": 1}}]}"#, "Only one key allowed in match expression"),
    (r#"{"a": [{"anything-but": {"prefix": "foo"}, "x": 1}]}"#, "Only one key allowed in match expression"),
    (r#"{"a": [{"anything-but": {"equals-ignore-case": [1, 2, 3]}}]}"#, "equals-ignore-case takes a string or a list of strings"),
    (r#"{"a": [{"anything-but": {"wildcard": 27}}]}"#, "wildcard takes a string or a list of strings"),
    (r#"{"a": [{"anything-but": {"wildcard": "foo**bar"}}]}"#, "consecutive wildcard characters at position 3"),
    (r#"{"a": [{"anything-but": {"wildcard": ["1", "foo*bar\\"]}}]}"#, "invalid escape character"),
    (r#"{"a": [{"anything-but": {}}]}"#, "Match expression is empty"),
    (r#"{"key": [{"numeric": []}]}"#, "A numeric match needs an operator and a value"),
    (r#"{"key": [{"numeric": 5}]}"#, "numeric match pattern must be an array"),
    (r#"{"key": [{"numeric": ["operator"]}]}"#, "Unrecognized numeric range operator: operator"),
    (r#"{"key": [{"numeric": [1, "<="]}]}"#, "Invalid member in numeric match: 1"),
    (r#"{"key": [{"numeric": ["=", "000"]}]}"#, "Value of = must be numeric"),
    (r#"{"key": [{"numeric": ["=", true]}]}"#, "Value of = must be numeric"),
    (r#"{"key": [{"numeric": ["=", 1, 2]}]}"#, "Too many elements in numeric expression"),
    (r#"{"key": [{"numeric": [">="]}]}"#, "Value of >= must be numeric"),
    (r#"{"key": [{"numeric": ["<", 100, ">", 10]}]}"#, "Too many elements in numeric expression"),
    (r#"{"key": [{"numeric": [">=", 1, ">", 2]}]}"#, "Bad numeric range operator: >"),
    (r#"{"key": [{"numeric": [">", 3, "<", 1]}]}"#, "Bottom must be less than top"),
    (r#"{"key": [{"numeric": [">", 1, "<", 1]}]}"#, "Bottom must be less than top"),
    (r#"{"key": [{"numeric": [">=", 1, "<=", 1]}]}"#, "Bottom must be less than top"),
    (r#"{"key": [{"numeric": [">", 20, "<="]}]}"#, "Value of <= must be numeric"),
    (r#"{"key": [{"numeric": [">", 20, 30]}]}"#, "Bad value in numeric range: 30"),
    (r#"{"key": [{"numeric": [">", 20, "test"]}]}"#, "Bad numeric range operator: test"),
    (r#"{"key": [{"numeric": [">", "20", "<", "30"]}]}"#, "Value of > must be numeric"),
    (r#"{"key": [{"numeric": [">", 20, "<", "30"]}]}"#, "Value of < must be numeric"),
    (r#"{"key": [{"numeric": [">", 20, "<", 30, "<", 50]}]}"#, "Too many terms in numeric range expression"),
    (r#"{"key": [{"numeric": [">", 1, "<", 30, false]}]}"#, "Too many terms in numeric range expression"),
    (r#"{"key": [{"numeric": ["<>", 1, ">", 0]}]}"#, "Unrecognized numeric range operator: <>"),
    (r#"{"key": [{"numeric": ["==", 1]}]}"#, "Unrecognized numeric range operator: =="),
    (r#"{"$or": [{"metricName": ["CPUUtilization"]}]}"#, "Invalid $or: $or must hold at least 2 objects (at $or)"),
    (r#"{"$or": {"metricType": ["MetricType"]}}"#, "the value of $or must be an array of objects"),
    (r#"{"$or": "x"}"#, "the value of $or must be an array of objects"),
    (r#"{"detail": {"$or": [{"source": ["aws.cloudwatch"]}, [{"foo": ["wrong"]}]]}}"#, "only objects are allowed in the array of $or (at detail.$or[1])"),
    (r#"{"$or": [{"numeric": 123}, {"prefix": "abc"}]}"#, "\"numeric\" is a reserved keyword and cannot be used as a field name inside $or"),
    (r#"{"$or": [{"a": ["x"]}, {"b": {"wildcard": "x"}}]}"#, "\"wildcard\" must be an object or an array (at $or[1].b.wildcard)"),
    (r#"{"$or": [{"a": ["x"]}, {}]}"#, "Empty objects are not allowed (at $or[1])"),
    (r#"{"$or": [{"a": ["x"]}, {"b": [{"prefix": 1}]}]}"#, "prefix match pattern must be a string (at $or[1].b[0])"),
];

#[test]
fn refusals() {
    check_refusals("refused", REFUSED, |p| Pattern::parse(p).map(drop));
}

#[test]
fn errors_say_where() {
    let e = Pattern::parse(r#"{"detail": {"state": ["ok", {"prefix": 3}]}}"#)
        .expect_err("a numeric prefix is refused");
    assert_eq!(e.path(), "detail.state[1]");
    assert_eq!(
        e.kind(),
        &ErrorKind::InvalidOperand {
            operator: "prefix",
            expected: "a string"
        }
    );
    assert_eq!(
        e.to_string(),
        "prefix match pattern must be a string (at detail.state[1])"
    );
    let whole = Pattern::parse("[]").expect_err("an array is not a pattern");
    assert_eq!(whole.path(), "");
    assert_eq!(whole.to_string(), "Pattern must be a JSON object");
}

/// `{"f0": {"f0": ... {"leaf": [1]}}}`, `levels` objects deep.
fn nested(levels: usize) -> Value {
    (1..levels).fold(json!({"leaf": [1]}), |inner, _| json!({ "f0": inner }))
}

#[test]
fn depth_is_limited() {
    let deepest = nested(MAX_DEPTH);
    let pattern = Pattern::from_value(&deepest).expect("the deepest allowed pattern compiles");
    let event = (1..MAX_DEPTH).fold(json!({"leaf": 1}), |inner, _| json!({ "f0": inner }));
    assert!(pattern.matches(&event));
    let e = Pattern::from_value(&nested(MAX_DEPTH + 1)).expect_err("one level more is refused");
    assert_eq!(e.kind(), &ErrorKind::TooDeep(MAX_DEPTH));
}

/// A `$or` of `n` single-field branches.
fn alternatives(n: usize) -> Value {
    Value::Array((0..n).map(|i| json!({ format!("k{i}"): [i] })).collect())
}

#[test]
fn or_combinations_are_limited() {
    let at_limit = json!({"a": {"$or": alternatives(10)}, "b": {"$or": alternatives(10)}, "c": {"$or": alternatives(10)}});
    assert!(Pattern::from_value(&at_limit).is_ok());
    let over = json!({"a": {"$or": alternatives(10)}, "b": {"$or": alternatives(10)}, "c": {"$or": alternatives(11)}});
    let e = Pattern::from_value(&over).expect_err("1100 combinations are too many");
    assert_eq!(e.kind(), &ErrorKind::TooManyCombinations(MAX_COMBINATIONS));
    assert!(e.to_string().contains("more than 1000 rule combinations"));
}

#[test]
fn patterns_are_shareable_values() {
    fn shareable<T: Clone + Send + Sync + std::fmt::Debug>(_: &T) {}
    let pattern = Pattern::parse(r#"{"a": [1]}"#).expect("a simple pattern compiles");
    shareable(&pattern);
    let copy = pattern.clone();
    assert_eq!(copy, pattern);
    assert!(format!("{pattern:?}").contains("Exact"));
    assert!(copy.matches(&json!({"a": 1})));
}

// ---- SNS ----

fn attributes_policy(text: &str) -> FilterPolicy {
    FilterPolicy::parse(text, FilterPolicyScope::MessageAttributes)
        .unwrap_or_else(|e| panic!("{text} was refused: {e}"))
}

fn body_policy(text: &str) -> FilterPolicy {
    FilterPolicy::parse(text, FilterPolicyScope::MessageBody)
        .unwrap_or_else(|e| panic!("{text} was refused: {e}"))
}

fn attribute<'a>(
    name: &'a str,
    data_type: &'a str,
    value: &'a str,
) -> (&'a str, AttributeValue<'a>) {
    (name, AttributeValue { data_type, value })
}

/// A policy, the message attributes as (name, type, value), and whether they match.
type AttributeCase = (
    &'static str,
    &'static [(&'static str, &'static str, &'static str)],
    bool,
);

// SNS "Example filter policies", "String value matching", "Numeric value matching", "Key
// matching", "AND/OR logic", "Filter policy constraints" (attribute data types), and how
// SNS treats `null`, `String.Array` and missing attributes.
#[rustfmt::skip]
const ATTRIBUTE_CASES: &[AttributeCase] = &[
    (r#"{"store": ["example_corp"], "event": [{"anything-but": "order_cancelled"}], "customer_interests": ["rugby", "football", "baseball"], "price_usd": [{"numeric": [">=", 100]}]}"#, &[("customer_interests", "String.Array", r#"["soccer", "rugby", "hockey"]"#), ("store", "String", "example_corp"), ("event", "String", "order_placed"), ("price_usd", "Number", "210.75")], true),
    (r#"{"store": ["example_corp"], "event": ["order_cancelled"], "encrypted": [false], "customer_interests": ["basketball", "baseball"]}"#, &[("customer_interests", "String.Array", r#"["soccer", "rugby", "hockey"]"#), ("store", "String", "example_corp"), ("event", "String", "order_placed")], false),
    (r#"{"customer_interests": ["rugby", "tennis"]}"#, &[("customer_interests", "String", "rugby")], true),
    (r#"{"customer_interests": ["rugby", "tennis"]}"#, &[("customer_interests", "String", "baseball")], false),
    (r#"{"customer_interests": [{"prefix": "bas"}]}"#, &[("customer_interests", "String", "basketball")], true),
    (r#"{"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}"#, &[("customer_interests", "String.Array", r#"["rugby", "baseball"]"#)], true),
    (r#"{"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}"#, &[("customer_interests", "String", "rugby")], false),
    (r#"{"event": [{"anything-but": {"prefix": "order-"}}]}"#, &[("event", "String", "order_number")], true),
    (r#"{"event": [{"anything-but": {"prefix": "order-"}}]}"#, &[("event", "String", "order-cancelled")], false),
    (r#"{"source_ip": [{"cidr": "10.0.0.0/24"}]}"#, &[("source_ip", "String", "10.0.0.255")], true),
    (r#"{"source_ip": [{"cidr": "10.0.0.0/24"}]}"#, &[("source_ip", "String", "10.1.1.0")], false),
    (r#"{"price_usd": [{"numeric": ["=", 301.5]}]}"#, &[("price_usd", "Number", "3.015e2")], true),
    (r#"{"price": [{"anything-but": [100, 500]}]}"#, &[("price", "Number", "100.1")], true),
    (r#"{"price": [{"anything-but": [100, 500]}]}"#, &[("price", "Number", "100")], false),
    (r#"{"price": [{"anything-but": [100, 500]}]}"#, &[("price", "Number.Array", "[100, 50]")], true),
    (r#"{"price_usd": [{"numeric": [">", 0, "<=", 150]}]}"#, &[("price_usd", "Number", "150")], true),
    (r#"{"p": [100]}"#, &[("p", "Number", "1e2")], true),
    (r#"{"p": ["100"]}"#, &[("p", "Number", "100")], false),
    (r#"{"p": [100]}"#, &[("p", "String", "100")], false),
    (r#"{"p": [{"numeric": [">", 1]}]}"#, &[("p", "String", "5")], false),
    (r#"{"p": [{"numeric": [">", 1]}]}"#, &[("p", "Number.float", "5.5")], true),
    (r#"{"p": ["x"]}"#, &[("p", "String.custom", "x")], true),
    (r#"{"p": ["12abc"]}"#, &[("p", "Number", "12abc")], true),
    (r#"{"a": [1]}"#, &[("a", "String.Array", "[1, 2, true, null]")], true),
    (r#"{"a": [null]}"#, &[("a", "String.Array", "[\"x\", null]")], true),
    (r#"{"a": ["not json"]}"#, &[("a", "String.Array", "not json")], true),
    (r#"{"store": ["value1"]}"#, &[("store", "String.Array", r#"["value1", "value2"]"#)], true),
    (r#"{"store": ["value1"]}"#, &[("store", "String.Array", r#"["value2", "value3"]"#)], false),
    (r#"{"store": [{"exists": true}]}"#, &[("store", "Number", "99"), ("def", "Number", "99")], true),
    (r#"{"store": [{"exists": true}]}"#, &[("attr1", "Number", "111")], false),
    (r#"{"store": [{"exists": false}]}"#, &[("def", "Number", "99")], true),
    (r#"{"store": [{"exists": false}]}"#, &[("store", "Number", "99"), ("def", "Number", "99")], false),
    (r#"{"encrypted": [false]}"#, &[], false),
    (r#"{"attr1": [null, {"anything-but": "whatever"}]}"#, &[], false),
    (r#"{"attr1": [null, {"anything-but": "whatever"}]}"#, &[("attr1", "String", "x")], true),
    (r#"{"blob": [{"exists": true}]}"#, &[("blob", "Binary", "AAEC")], false),
    (r#"{"blob": [{"exists": false}]}"#, &[("blob", "Binary", "AAEC")], true),
    (r#"{"blob": [{"exists": false}]}"#, &[("blob", "Binary.jpeg", "AAEC")], true),
    (r#"{"customer_interests": ["rugby"], "price_usd": [{"numeric": [">", 100]}]}"#, &[("customer_interests", "String", "rugby"), ("price_usd", "Number", "101")], true),
    (r#"{"customer_interests": ["rugby"], "price_usd": [{"numeric": [">", 100]}]}"#, &[("customer_interests", "String", "rugby"), ("price_usd", "Number", "99")], false),
    (r#"{"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}]}"#, &[("source", "String", "aws.cloudwatch"), ("namespace", "String", "AWS/EC2")], true),
    (r#"{"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}]}"#, &[("source", "String", "aws.cloudwatch"), ("namespace", "String", "AWS/ES")], false),
    (r#"{"event": [{"suffix": "_placed"}]}"#, &[("event", "String", "order_placed")], true),
    (r#"{"event": [{"equals-ignore-case": "ORDER_PLACED"}]}"#, &[("event", "String", "order_placed")], true),
];

#[test]
fn sns_attribute_policies() {
    for (i, (policy, attributes, expected)) in ATTRIBUTE_CASES.iter().enumerate() {
        let compiled = attributes_policy(policy);
        let given = attributes.iter().map(|(n, t, v)| attribute(n, t, v));
        assert_eq!(
            compiled.matches_attributes(given),
            *expected,
            "attributes[{i}]: {policy} against {attributes:?}"
        );
    }
}

/// A policy, a message body, and whether they match.
type BodyCase = (&'static str, &'static str, bool);

// SNS "String value matching" and "Key matching" (message bodies), "Amazon SNS message
// filtering" (bodies must be JSON objects), and SNS's handling of arrays in bodies.
const NESTED_POLICY: &str = r#"{"object": {"key": [{"prefix": "auto-"}, "hardcodedvalue"], "nested_key": [{"exists": false}]}, "test": [{"exists": false}]}"#;
#[rustfmt::skip]
const BODY_CASES: &[BodyCase] = &[
    (NESTED_POLICY, r#"{"object": {"key": "auto-test"}}"#, true),
    (NESTED_POLICY, r#"{"object": {"key": "hardcodedvalue"}}"#, true),
    (NESTED_POLICY, r#"{"object": {"key": "test-auto"}}"#, false),
    (NESTED_POLICY, r#"{"object": {"key": "auto-test"}, "test": "just-exists"}"#, false),
    (NESTED_POLICY, r#"{"object": {"key": "auto-test", "nested_key": "just-exists"}}"#, false),
    (NESTED_POLICY, r#"{"object": {"test": "auto-test"}}"#, false),
    (NESTED_POLICY, r#"{"test": "auto-test"}"#, false),
    (NESTED_POLICY, "Regular string message", false),
    (NESTED_POLICY, r#""Regular string message""#, false),
    (NESTED_POLICY, r#"[{"object": {"key": "auto-test"}}]"#, false),
    (r#"{"headers": {"route-to": ["queue1"]}}"#, r#"{"headers": {"route-to": ["queue1", "queue2"]}}"#, true),
    (r#"{"headers": {"route-to": ["queue1"]}}"#, r#"{"headers": {"route-to": ["queue3"]}}"#, false),
    (r#"{"customer_interests": ["rugby", "tennis"]}"#, r#"{"customer_interests": "rugby"}"#, true),
    (r#"{"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}"#, r#"{"customer_interests": ["rugby"]}"#, false),
    (r#"{"store": [{"exists": true}]}"#, r#"{"store": "fans", "customer_interests": ["baseball", "basketball"]}"#, true),
    (r#"{"store": [{"exists": false}]}"#, r#"{"customer_interests": ["baseball", "basketball"]}"#, true),
    (r#"{"price_usd": [{"numeric": ["=", 301.5]}]}"#, r#"{"price_usd": 3.015e2}"#, true),
    (OR_SNS_BODY, r#"{"namespace": "AWS/EC2", "detail": {"scope": "Service", "source": "aws.cloudwatch"}}"#, true),
    (OR_SNS_BODY, r#"{"metricName": "CPUUtilization", "detail": {"scope": "Service"}}"#, false),
];

#[test]
fn sns_body_policies() {
    for (i, (policy, body, expected)) in BODY_CASES.iter().enumerate() {
        let compiled = body_policy(policy);
        assert_eq!(
            compiled.matches_body(body),
            *expected,
            "body[{i}]: {policy} against {body}"
        );
    }
}

#[test]
fn sns_scope_picks_what_is_matched() {
    let body = r#"{"store": "example_corp"}"#;
    let attributes = [attribute("store", "String", "other")];
    let on_attributes = attributes_policy(r#"{"store": ["example_corp"]}"#);
    assert_eq!(on_attributes.scope(), FilterPolicyScope::MessageAttributes);
    assert!(!on_attributes.matches_message(body, attributes));
    let on_body = body_policy(r#"{"store": ["example_corp"]}"#);
    assert_eq!(on_body.scope(), FilterPolicyScope::MessageBody);
    assert!(on_body.matches_message(body, attributes));
    assert!(on_attributes.matches_message("", [attribute("store", "String", "example_corp")]));

    assert_eq!(
        FilterPolicyScope::default(),
        FilterPolicyScope::MessageAttributes
    );
    for scope in [
        FilterPolicyScope::MessageAttributes,
        FilterPolicyScope::MessageBody,
    ] {
        assert_eq!(FilterPolicyScope::parse(scope.as_str()), Some(scope));
    }
    assert_eq!(FilterPolicyScope::parse("RandomValue"), None);
}

/// Keys `key0`, `key1`, ... each with `values` string values.
fn flat_policy(keys: usize, values: usize) -> String {
    let fields: serde_json::Map<String, Value> = (0..keys)
        .map(|k| {
            let list = (0..values).map(|v| json!(format!("value{v}"))).collect();
            (format!("key{k}"), Value::Array(list))
        })
        .collect();
    Value::Object(fields).to_string()
}

// SNS "Filter policy constraints" (keys, combinations, size, nesting) and "AND/OR logic"
// (how `$or` branches add up).
#[test]
fn sns_limits() {
    let refused = |text: &str, scope| {
        FilterPolicy::parse(text, scope)
            .expect_err("the policy is over a limit")
            .to_string()
    };
    let attributes = FilterPolicyScope::MessageAttributes;
    let body = FilterPolicyScope::MessageBody;

    assert!(FilterPolicy::parse(&flat_policy(5, 1), attributes).is_ok());
    assert_eq!(
        refused(&flat_policy(6, 1), attributes),
        "Filter policy can not have more than 5 keys"
    );
    assert_eq!(
        refused(&flat_policy(6, 1), body),
        "Filter policy can not have more than 5 keys"
    );
    assert!(FilterPolicy::parse(&flat_policy(1, 150), attributes).is_ok());
    assert_eq!(
        refused(&flat_policy(1, 151), attributes),
        "Filter policy is too complex"
    );
    let two = json!({
        "key1": (0..100).map(|v| format!("value{v}")).collect::<Vec<_>>(),
        "key2": (0..51).map(|v| format!("value{v}")).collect::<Vec<_>>(),
    });
    assert_eq!(
        refused(&two.to_string(), attributes),
        "Filter policy is too complex"
    );

    // (source x metricName) + (source x metricType x metricId) + (source x metricType x spaceId)
    let flat_or = |spaces: usize, sources: usize| {
        json!({
            "source": (0..sources).map(|v| format!("s{v}")).collect::<Vec<_>>(),
            "$or": [
                {"metricName": ["a", "b", "c", "d", "e", "f"]},
                {"metricType": ["w", "x", "y", "z"], "$or": [
                    {"metricId": [1234, 4321, 5678, 9012]},
                    {"spaceId": (0..spaces).collect::<Vec<_>>()},
                ]},
            ],
        })
        .to_string()
    };
    assert_eq!(
        refused(&flat_or(4, 4), attributes),
        "Filter policy is too complex"
    ); // 152
    assert!(FilterPolicy::parse(&flat_or(7, 3), attributes).is_ok()); // 150

    // The guide's nested example: 3 x 4 x 2 x 3 = 72; with a third key of 3 values, 216.
    let nested = json!({
        "key_a": {"key_b": {"key_c": ["value_one", "value_two", "value_three", "value_four"]}},
        "key_d": {"key_e": ["value_one", "value_two", "value_three"]},
    });
    assert!(FilterPolicy::parse(&nested.to_string(), body).is_ok());
    let mut wider = nested.clone();
    wider["key_f"] = json!(["value_one", "value_two", "value_three"]);
    assert_eq!(
        refused(&wider.to_string(), body),
        "Filter policy is too complex"
    );
    // (3 x 4 x 2) + (3 x 4 x 6) + (2 x 4 x 2) + (2 x 4 x 6) = 160
    let nested_or = json!({
        "$or": [{"metricName": ["a", "b", "c"]}, {"namespace": ["AWS/EC2", "AWS/ES"]}],
        "detail": {"scope": ["Service", "Test"], "$or": [{"source": ["aws.cloudwatch"]}, {"type": ["x", "y", "z"]}]},
    });
    assert_eq!(
        refused(&nested_or.to_string(), body),
        "Filter policy is too complex"
    );

    // Only parent keys count in a nested policy; $or branches count their own.
    let deep_keys =
        json!({"a": {"b1": [1], "b2": [1], "b3": [1], "b4": [1], "b5": [1], "b6": [1]}});
    assert!(FilterPolicy::parse(&deep_keys.to_string(), body).is_ok());
    let or_keys = json!({"a": [1], "b": [1], "$or": [{"c": [1], "d": [1]}, {"e": [1], "f": [1]}]});
    assert_eq!(
        refused(&or_keys.to_string(), attributes),
        "Filter policy can not have more than 5 keys"
    );

    let nested_attribute = json!({"object": {"key": [{"prefix": "auto-"}]}}).to_string();
    assert_eq!(
        refused(&nested_attribute, attributes),
        "Filter policy scope MessageAttributes does not support nested filter policy (at object)"
    );
    assert!(FilterPolicy::parse(&nested_attribute, body).is_ok());
    let nested_in_or = json!({"$or": [{"a": [1]}, {"b": {"c": [1]}}]}).to_string();
    assert!(refused(&nested_in_or, attributes).contains("does not support nested filter policy"));

    let wildcard = json!({"key": [{"wildcard": "a*"}]}).to_string();
    assert_eq!(
        refused(&wildcard, body),
        "wildcard is not supported in SNS filter policies (at key[0])"
    );
    let not_wildcard = json!({"key": [{"anything-but": {"wildcard": "a*"}}]}).to_string();
    assert!(refused(&not_wildcard, attributes).contains("anything-but wildcard is not supported"));

    let huge = format!(r#"{{"key": ["{}"]}}"#, "x".repeat(256 * 1024));
    assert_eq!(
        refused(&huge, attributes),
        "Filter policy is larger than 262144 bytes"
    );
    assert!(refused("{\"key\": ", attributes).starts_with("Pattern is not valid JSON"));
    assert_eq!(
        refused(r#"{"key_a": "value_one"}"#, body),
        "\"key_a\" must be an object or an array (at key_a)"
    );
}

// ---- Lambda ----

fn criteria(filters: &[&str]) -> FilterCriteria {
    let value =
        json!({"Filters": filters.iter().map(|p| json!({"Pattern": p})).collect::<Vec<_>>()});
    FilterCriteria::parse(&value).unwrap_or_else(|e| panic!("{filters:?} were refused: {e}"))
}

fn sqs_record(body: &str) -> Value {
    json!({
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SenderId": "AIDAIENQZJOLO23YVJ4VO"},
        "messageAttributes": {"kind": {"stringValue": "order", "dataType": "String"}},
        "eventSource": "aws:sqs",
        "awsRegion": "us-east-2",
    })
}

/// Filters, an SQS message body, and whether the record passes.
type SqsCase = (&'static [&'static str], &'static str, bool);

// "Lambda event filtering": filter basics, duplicate keys, and "Properly filtering Amazon
// SQS messages" (the body format table).
#[rustfmt::skip]
const SQS_CASES: &[SqsCase] = &[
    (&[r#"{"body": {"City": ["Seattle"]}}"#], r#"{"City": "Seattle", "State": "WA"}"#, true),
    (&[r#"{"body": {"City": ["Seattle"]}}"#], r#"{"City": "Portland"}"#, false),
    (&[r#"{"body": {"Temperature": [{"numeric": [">", 50, "<=", 60]}]}}"#], r#"{"Temperature": 55}"#, true),
    (&[r#"{"body": ["hello"]}"#], "hello", true),
    (&[r#"{"body": [{"prefix": "hel"}]}"#], "hello", true),
    (&[r#"{"body": ["hello"]}"#], "goodbye", false),
    (&[r#"{"body": {"City": ["Seattle"]}}"#], "plain text", false),
    (&[r#"{"body": {"City": [{"exists": false}]}}"#], "plain text", false),
    (&[r#"{"body": [{"prefix": "{"}]}"#], r#"{"City": "Seattle"}"#, false),
    (&[r#"{"body": [{"exists": true}]}"#], r#"{"City": "Seattle"}"#, false),
    (&[r#"{"body": ["42"]}"#], "42", true),
    (&[r#"{"body": {"a": [1]}}"#], "[{\"a\": 1}]", true),
    (&[r#"{"attributes": {"ApproximateReceiveCount": ["1"]}}"#], "plain text", true),
    (&[r#"{"attributes": {"ApproximateReceiveCount": ["1"]}}"#], r#"{"City": "Seattle"}"#, true),
    (&[r#"{"attributes": {"ApproximateReceiveCount": ["2"]}}"#], "plain text", false),
    (&[r#"{"messageAttributes": {"kind": {"stringValue": ["order"]}}, "body": {"City": ["Seattle"]}}"#], r#"{"City": "Seattle"}"#, true),
    (&[r#"{"messageAttributes": {"kind": {"stringValue": ["refund"]}}, "body": {"City": ["Seattle"]}}"#], r#"{"City": "Seattle"}"#, false),
    (&[r#"{"$or": [{"body": ["hello"]}, {"body": {"a": [1]}}]}"#], "hello", true),
    (&[r#"{"$or": [{"body": ["hello"]}, {"body": {"a": [1]}}]}"#], r#"{"a": 1}"#, true),
    (&[r#"{"$or": [{"body": ["hello"]}, {"body": {"a": [1]}}]}"#], r#"{"a": 2}"#, false),
    (&[r#"{"body": {"a": [1]}}"#, r#"{"body": ["hello"]}"#], "hello", true),
    (&[r#"{"body": {"a": [1]}}"#, r#"{"body": ["hello"]}"#], r#"{"a": 1}"#, true),
    (&[r#"{"body": {"a": [1]}}"#, r#"{"body": ["hello"]}"#], "bye", false),
    (&[r#"{"body": {"duplicateKey": ["hello"], "uniqueKey": ["test123"], "duplicateKey": ["world"]}}"#], r#"{"duplicateKey": "world", "uniqueKey": "test123"}"#, true),
    (&[r#"{"body": {"duplicateKey": ["hello"], "uniqueKey": ["test123"], "duplicateKey": ["world"]}}"#], r#"{"duplicateKey": "hello", "uniqueKey": "test123"}"#, false),
    (&[r#"{"eventSource": ["aws:sqs"], "body": {"City": ["Seattle"]}}"#], r#"{"City": "Seattle"}"#, true),
];

#[test]
fn lambda_sqs_records() {
    for (i, (filters, body, expected)) in SQS_CASES.iter().enumerate() {
        let compiled = criteria(filters);
        assert_eq!(
            compiled.matches_sqs_record(&sqs_record(body)),
            *expected,
            "sqs[{i}]: {filters:?} against {body}"
        );
    }
}

#[test]
fn lambda_filter_criteria() {
    let a = criteria(&[r#"{"a": [1, 2]}"#]);
    assert_eq!(a.patterns().len(), 1);
    assert!(!a.is_empty());
    assert!(a.matches(&json!({"a": 1})));
    assert!(!a.matches(&json!({"a": 3})));

    for nothing in [json!({}), json!({"Filters": []})] {
        let none = FilterCriteria::parse(&nothing).expect("no filters is valid");
        assert!(none.is_empty());
        assert!(none.matches(&json!({"anything": true})));
        assert!(none.matches_sqs_record(&sqs_record("x")));
    }

    // A Kinesis-style record: the payload field is another name, matched the same way.
    let kinesis = criteria(&[r#"{"partitionKey": ["1"], "data": {"Location": ["Los Angeles"]}}"#]);
    let record = json!({"partitionKey": "1", "data": "{\"Location\": \"Los Angeles\"}"});
    assert!(kinesis.matches_with_payload(&record, "data"));
    assert!(!kinesis.matches(&record));
    let plain = json!({"partitionKey": "1", "data": "Los Angeles"});
    assert!(!kinesis.matches_with_payload(&plain, "data"));
    let structured = json!({"partitionKey": "1", "data": {"Location": "Los Angeles"}});
    assert!(kinesis.matches_with_payload(&structured, "data"));

    let six: Vec<Value> = (0..6)
        .map(|i| json!({"Pattern": format!(r#"{{"a": [{i}]}}"#)}))
        .collect();
    let e = FilterCriteria::parse(&json!({"Filters": six})).expect_err("six filters are too many");
    assert_eq!(
        e.to_string(),
        "Filter criteria can not have more than 5 filters (at Filters)"
    );
    let raised = FilterCriteria::parse_with_limit(&json!({"Filters": six}), 10)
        .expect("a raised quota allows six");
    assert_eq!(raised.patterns().len(), 6);
    assert!(raised.matches(&json!({"a": 5})));
    assert_eq!(DEFAULT_MAX_FILTERS, 5);
}

#[test]
fn lambda_filter_criteria_refusals() {
    let refused = |criteria: Value| {
        FilterCriteria::parse(&criteria)
            .expect_err("the criteria are invalid")
            .to_string()
    };
    assert_eq!(
        refused(json!([])),
        "Invalid filter criteria: FilterCriteria must be an object"
    );
    assert_eq!(
        refused(json!({"Filters": {"Pattern": "{}"}})),
        "Invalid filter criteria: Filters must be an array (at Filters)"
    );
    assert_eq!(
        refused(json!({"Filters": [{"Pattern": "{\"a\": [1]}"}, {"pattern": "{}"}]})),
        "Invalid filter criteria: each filter needs a Pattern string (at Filters[1].Pattern)"
    );
    assert_eq!(
        refused(json!({"Filters": [{"Pattern": {"a": [1]}}]})),
        "Invalid filter criteria: each filter needs a Pattern string (at Filters[0].Pattern)"
    );
    assert_eq!(
        refused(
            json!({"Filters": [{"Pattern": "{\"a\": [1]}"}, {"Pattern": "{\"a\": [{\"prefix\": 1}]}"}]})
        ),
        "prefix match pattern must be a string (at Filters[1].Pattern.a[0])"
    );
    assert_eq!(
        refused(json!({"Filters": [{"Pattern": "{\"a\": "}]}))
            .split(':')
            .next(),
        Some("Pattern is not valid JSON")
    );
    let e =
        FilterCriteria::parse(&json!({"Filters": [{"Pattern": "[]"}]})).expect_err("not an object");
    assert_eq!(e.kind(), &ErrorKind::NotAnObject);
    assert_eq!(e.path(), "Filters[0].Pattern");
}
