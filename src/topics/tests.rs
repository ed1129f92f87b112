//! The topic service against a real store: topics, subscriptions, filter policies and
//! the outbox a publish writes.

use std::collections::BTreeMap;

use super::*;

const ACCOUNT: &str = "000000000000";

fn service() -> (tempfile::TempDir, Arc<TopicService>) {
    let dir = tempfile::tempdir().unwrap();
    let topics = TopicService::open(&dir.path().join("t.db"), ACCOUNT, Default::default()).unwrap();
    (dir, topics)
}

fn region() -> ArnContext {
    ArnContext::new("us-east-1", ACCOUNT)
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn queue(name: &str) -> String {
    format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}")
}

fn text(message: &str) -> Publication {
    Publication {
        message: Some(message.into()),
        ..Publication::default()
    }
}

fn with_attribute(message: &str, name: &str, data_type: &str, value: &str) -> Publication {
    let mut p = text(message);
    p.attributes.insert(
        name.into(),
        Attribute {
            data_type: data_type.into(),
            string_value: Some(value.into()),
            binary_value: None,
        },
    );
    p
}

/// Every job the publishes so far handed to the deliverer.
fn handed(topics: &TopicService, rx: &mut mpsc::UnboundedReceiver<Vec<Job>>) -> Vec<Job> {
    let _ = topics;
    let mut jobs = Vec::new();
    while let Ok(batch) = rx.try_recv() {
        jobs.extend(batch);
    }
    jobs
}

#[test]
fn topics_are_created_once_listed_and_deleted() {
    let (_dir, topics) = service();
    let arn = topics
        .create_topic(
            &region(),
            "orders",
            attrs(&[("DisplayName", "Orders")]),
            BTreeMap::new(),
        )
        .unwrap();
    assert_eq!(arn, format!("arn:aws:sns:us-east-1:{ACCOUNT}:orders"));
    // The same again is the same topic; other attributes are refused.
    assert_eq!(
        topics
            .create_topic(
                &region(),
                "orders",
                attrs(&[("DisplayName", "Orders")]),
                BTreeMap::new()
            )
            .unwrap(),
        arn
    );
    assert!(matches!(
        topics.create_topic(
            &region(),
            "orders",
            attrs(&[("DisplayName", "Other")]),
            BTreeMap::new()
        ),
        Err(TopicError::InvalidParameter(_))
    ));
    let (listed, next) = topics.list_topics("us-east-1", None).unwrap();
    assert_eq!((listed, next), (vec![arn.clone()], None));
    assert!(topics.list_topics("eu-west-1", None).unwrap().0.is_empty());
    let attributes = topics.topic_attributes(&arn).unwrap();
    assert_eq!(attributes["DisplayName"], "Orders");
    assert_eq!(attributes["Owner"], ACCOUNT);
    assert_eq!(attributes["SubscriptionsConfirmed"], "0");
    topics.delete_topic(&arn).unwrap();
    assert!(matches!(
        topics.topic_attributes(&arn),
        Err(TopicError::NotFound(_))
    ));
    // Deleting what is gone is not an error.
    topics.delete_topic(&arn).unwrap();
}

#[test]
fn names_and_fifo_flags_are_checked() {
    let (_dir, topics) = service();
    for bad in ["", "has space", "a:b", &"x".repeat(257), ".fifo"] {
        assert!(
            topics
                .create_topic(&region(), bad, BTreeMap::new(), BTreeMap::new())
                .is_err(),
            "{bad:?}"
        );
    }
    assert!(
        topics
            .create_topic(&region(), "a.fifo", BTreeMap::new(), BTreeMap::new())
            .is_err()
    );
    assert!(
        topics
            .create_topic(
                &region(),
                "a",
                attrs(&[("FifoTopic", "true")]),
                BTreeMap::new()
            )
            .is_err()
    );
    let fifo = topics
        .create_topic(
            &region(),
            "a.fifo",
            attrs(&[("FifoTopic", "true")]),
            BTreeMap::new(),
        )
        .unwrap();
    assert_eq!(topics.topic_attributes(&fifo).unwrap()["FifoTopic"], "true");
}

#[test]
fn topics_and_subscriptions_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let (topic, sub) = {
        let topics = TopicService::open(&path, ACCOUNT, Default::default()).unwrap();
        let topic = topics
            .create_topic(&region(), "t", BTreeMap::new(), attrs(&[("team", "a")]))
            .unwrap();
        let sub = topics
            .subscribe(
                &topic,
                "sqs",
                Some(&queue("q")),
                attrs(&[("RawMessageDelivery", "true")]),
                false,
            )
            .unwrap();
        (topic, sub)
    };
    let topics = TopicService::open(&path, ACCOUNT, Default::default()).unwrap();
    assert_eq!(topics.tags(&topic).unwrap()["team"], "a");
    assert_eq!(
        topics.subscription_attributes(&sub).unwrap()["RawMessageDelivery"],
        "true"
    );
}

#[test]
fn subscriptions_check_their_endpoints_and_are_idempotent() {
    let (_dir, topics) = service();
    let topic = topics
        .create_topic(&region(), "t", BTreeMap::new(), BTreeMap::new())
        .unwrap();
    let function = format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:f");
    let sub = topics
        .subscribe(&topic, "lambda", Some(&function), BTreeMap::new(), false)
        .unwrap();
    assert!(sub.starts_with(&format!("{topic}:")));
    assert_eq!(
        topics
            .subscribe(&topic, "lambda", Some(&function), BTreeMap::new(), false)
            .unwrap(),
        sub
    );
    for (protocol, endpoint) in [
        ("lambda", queue("q")),
        ("sqs", function.clone()),
        ("sqs", queue("q.fifo")),
        ("http", "ftp://x".to_string()),
        ("https", "http://example.test/".to_string()),
        ("email", "a@b.c".to_string()),
        ("carrier-pigeon", "x".to_string()),
        (
            "lambda",
            "arn:aws:lambda:us-east-1:111111111111:function:f".to_string(),
        ),
    ] {
        assert!(
            matches!(
                topics.subscribe(&topic, protocol, Some(&endpoint), BTreeMap::new(), false),
                Err(TopicError::InvalidParameter(_))
            ),
            "{protocol} {endpoint}"
        );
    }
    let missing = format!("arn:aws:sns:us-east-1:{ACCOUNT}:nope");
    assert!(matches!(
        topics.subscribe(&missing, "sqs", Some(&queue("q")), BTreeMap::new(), false),
        Err(TopicError::NotFound(_))
    ));
    topics.unsubscribe(&sub).unwrap();
    assert!(matches!(
        topics.unsubscribe(&sub),
        Err(TopicError::NotFound(_))
    ));
}

#[test]
fn http_subscriptions_wait_for_their_token() {
    let (_dir, topics) = service();
    let mut rx = topics.take_handoff().unwrap();
    let topic = topics
        .create_topic(&region(), "t", BTreeMap::new(), BTreeMap::new())
        .unwrap();
    let shown = topics
        .subscribe(
            &topic,
            "http",
            Some("http://127.0.0.1:1/hook"),
            BTreeMap::new(),
            false,
        )
        .unwrap();
    assert_eq!(shown, "pending confirmation");
    let jobs = handed(&topics, &mut rx);
    assert_eq!(jobs.len(), 1);
    let Kind::SubscriptionConfirmation { token } = &jobs[0].message.kind else {
        panic!("a confirmation request is sent");
    };
    // A pending subscription gets no notifications.
    topics.publish(&topic, vec![text("early")]).unwrap();
    assert!(handed(&topics, &mut rx).is_empty());
    assert!(topics.confirm(&topic, "wrong").is_err());
    let arn = topics.confirm(&topic, token).unwrap();
    assert_eq!(arn, jobs[0].subscription);
    assert_eq!(topics.confirm(&topic, token).unwrap(), arn);
    topics.publish(&topic, vec![text("now")]).unwrap();
    assert_eq!(handed(&topics, &mut rx).len(), 1);
}

#[test]
fn filter_policies_choose_the_subscriptions_a_message_goes_to() {
    let (_dir, topics) = service();
    let mut rx = topics.take_handoff().unwrap();
    let topic = topics
        .create_topic(&region(), "t", BTreeMap::new(), BTreeMap::new())
        .unwrap();
    let everything = topics
        .subscribe(&topic, "sqs", Some(&queue("all")), BTreeMap::new(), false)
        .unwrap();
    let red = topics
        .subscribe(
            &topic,
            "sqs",
            Some(&queue("red")),
            attrs(&[(
                "FilterPolicy",
                r#"{"color":["red"],"size":[{"numeric":[">",10]}]}"#,
            )]),
            false,
        )
        .unwrap();
    let orders = topics
        .subscribe(
            &topic,
            "sqs",
            Some(&queue("orders")),
            attrs(&[
                ("FilterPolicyScope", "MessageBody"),
                ("FilterPolicy", r#"{"kind":[{"prefix":"ord"}]}"#),
            ]),
            false,
        )
        .unwrap();
    let mut publish = |p: Publication| {
        topics.publish(&topic, vec![p]).unwrap();
        let mut to: Vec<String> = handed(&topics, &mut rx)
            .into_iter()
            .map(|j| j.subscription)
            .collect();
        to.sort();
        to
    };
    let mut big_red = with_attribute("x", "color", "String", "red");
    big_red.attributes.insert(
        "size".into(),
        Attribute {
            data_type: "Number".into(),
            string_value: Some("12".into()),
            binary_value: None,
        },
    );
    let mut expected = vec![everything.clone(), red.clone()];
    expected.sort();
    assert_eq!(publish(big_red), expected);
    assert_eq!(
        publish(with_attribute("x", "color", "String", "blue")),
        vec![everything.clone()]
    );
    let mut expected = vec![everything.clone(), orders.clone()];
    expected.sort();
    assert_eq!(publish(text(r#"{"kind":"order-1"}"#)), expected);
    assert_eq!(
        publish(text(r#"{"kind":"refund"}"#)),
        vec![everything.clone()]
    );
    // A policy is checked when it is set.
    assert!(
        topics
            .set_subscription_attribute(&red, "FilterPolicy", r#"{"color":"red"}"#)
            .is_err()
    );
    topics
        .set_subscription_attribute(&red, "FilterPolicy", "")
        .unwrap();
    assert_eq!(publish(text("y")).len(), 2);
}

#[test]
fn publications_are_checked_one_by_one() {
    let (_dir, topics) = service();
    let topic = topics
        .create_topic(&region(), "t", BTreeMap::new(), BTreeMap::new())
        .unwrap();
    let mut long_subject = text("x");
    long_subject.subject = Some("s".repeat(100));
    let mut bad_number = with_attribute("x", "n", "Number", "ten");
    bad_number.subject = Some("fine".into());
    let mut structure = text(r#"{"sqs":"only"}"#);
    structure.structure = Some("json".into());
    let mut dedup = text("x");
    dedup.dedup_id = Some("d".into());
    let results = topics
        .publish(
            &topic,
            vec![
                text("fine"),
                text(""),
                text(&"x".repeat(MAX_MESSAGE_BYTES + 1)),
                long_subject,
                bad_number,
                with_attribute("x", "AWS.reserved", "String", "v"),
                structure,
                dedup,
            ],
        )
        .unwrap();
    assert!(results[0].is_ok());
    let kinds: Vec<&str> = results[1..]
        .iter()
        .map(|r| match r {
            Err(TopicError::InvalidParameter(_)) => "param",
            Err(TopicError::InvalidParameterValue(_)) => "value",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "param", "param", "param", "value", "value", "param", "param"
        ]
    );
    let missing = format!("arn:aws:sns:us-east-1:{ACCOUNT}:nope");
    assert!(matches!(
        topics.publish(&missing, vec![text("x")]),
        Err(TopicError::NotFound(_))
    ));
}

#[test]
fn fifo_topics_deduplicate_and_claim_each_lane_in_order() {
    let (_dir, topics) = service();
    let mut rx = topics.take_handoff().unwrap();
    let topic = topics
        .create_topic(
            &region(),
            "t.fifo",
            attrs(&[("FifoTopic", "true"), ("ContentBasedDeduplication", "true")]),
            BTreeMap::new(),
        )
        .unwrap();
    let sub = topics
        .subscribe(
            &topic,
            "sqs",
            Some(&queue("q.fifo")),
            BTreeMap::new(),
            false,
        )
        .unwrap();
    let in_group = |m: &str, g: &str| Publication {
        group_id: Some(g.into()),
        ..text(m)
    };
    assert!(matches!(
        topics.publish(&topic, vec![text("no group")]).unwrap()[0],
        Err(TopicError::InvalidParameter(_))
    ));
    let results = topics
        .publish(
            &topic,
            vec![
                in_group("a1", "a"),
                in_group("a2", "a"),
                in_group("b1", "b"),
                in_group("a1", "a"),
            ],
        )
        .unwrap();
    let receipts: Vec<Receipt> = results.into_iter().map(Result::unwrap).collect();
    // The repeat is the first message again.
    assert_eq!(receipts[3], receipts[0]);
    let sequences: Vec<&str> = receipts[..3]
        .iter()
        .map(|r| r.sequence_number.as_deref().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    assert_eq!(sequences[0].len(), 20);
    // A later publish of the same body is a duplicate too (the window is 5 minutes).
    let again = topics.publish(&topic, vec![in_group("a1", "a")]).unwrap();
    assert_eq!(again[0].as_ref().unwrap(), &receipts[0]);
    // FIFO deliveries are not handed over: they are claimed, the head of each lane first.
    assert!(handed(&topics, &mut rx).is_empty());
    let first = topics.claim(10).unwrap();
    let mut bodies: Vec<&str> = first.iter().map(|j| j.message.message.as_str()).collect();
    bodies.sort();
    assert_eq!(bodies, vec!["a1", "b1"]);
    assert!(first.iter().all(|j| j.subscription == sub));
    assert!(topics.claim(10).unwrap().is_empty(), "a2 waits for a1");
    let a1 = first.iter().find(|j| j.message.message == "a1").unwrap();
    topics.settle(&[Settlement::Done { id: a1.id }]).unwrap();
    let next = topics.claim(10).unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].message.message, "a2");
}

#[test]
fn retries_come_back_when_due_and_claims_are_released_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let topics = TopicService::open(&path, ACCOUNT, Default::default()).unwrap();
    let mut rx = topics.take_handoff().unwrap();
    let topic = topics
        .create_topic(&region(), "t", BTreeMap::new(), BTreeMap::new())
        .unwrap();
    topics
        .subscribe(&topic, "sqs", Some(&queue("q")), BTreeMap::new(), false)
        .unwrap();
    topics
        .publish(&topic, vec![text("one"), text("two")])
        .unwrap();
    let jobs = handed(&topics, &mut rx);
    assert_eq!(jobs.len(), 2);
    // Handed-over deliveries are claimed: nothing more to claim.
    assert!(topics.claim(10).unwrap().is_empty());
    topics
        .settle(&[
            Settlement::Done { id: jobs[0].id },
            Settlement::Retry {
                id: jobs[1].id,
                attempts: 1,
                due_ms: now_ms() + 60_000,
            },
        ])
        .unwrap();
    assert_eq!(topics.pending().unwrap(), 1);
    assert!(topics.claim(10).unwrap().is_empty(), "not due yet");
    assert!(topics.next_due().unwrap().unwrap() > now_ms());
    topics
        .settle(&[Settlement::Retry {
            id: jobs[1].id,
            attempts: 1,
            due_ms: 0,
        }])
        .unwrap();
    let retried = topics.claim(10).unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 1);
    assert_eq!(retried[0].message.message, "two");
    // A crash leaves it claimed; the next start releases it.
    drop(topics);
    let topics = TopicService::open(&path, ACCOUNT, Default::default()).unwrap();
    let again = topics.claim(10).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message.message, "two");
}

#[test]
fn tags_follow_sns_limits() {
    let (_dir, topics) = service();
    let topic = topics
        .create_topic(&region(), "t", BTreeMap::new(), attrs(&[("a", "1")]))
        .unwrap();
    topics.tag(&topic, attrs(&[("b", "2")])).unwrap();
    topics.untag(&topic, &["a".to_string()]).unwrap();
    assert_eq!(topics.tags(&topic).unwrap(), attrs(&[("b", "2")]));
    assert!(topics.tag(&topic, attrs(&[("aws:x", "1")])).is_err());
    let many: BTreeMap<String, String> = (0..50).map(|i| (format!("k{i}"), "v".into())).collect();
    assert!(matches!(
        topics.tag(&topic, many),
        Err(TopicError::TagLimitExceeded(_))
    ));
    let missing = format!("arn:aws:sns:us-east-1:{ACCOUNT}:nope");
    assert!(matches!(
        topics.tags(&missing),
        Err(TopicError::ResourceNotFound(_))
    ));
}

#[test]
fn concurrent_publishes_are_committed_together_and_each_gets_its_own_jobs() {
    let (_dir, topics) = service();
    let mut rx = topics.take_handoff().unwrap();
    let topic = topics
        .create_topic(&region(), "t", BTreeMap::new(), BTreeMap::new())
        .unwrap();
    topics
        .subscribe(&topic, "sqs", Some(&queue("q")), BTreeMap::new(), false)
        .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let topics = topics.clone();
            let topic = topic.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let receipt = topics
                            .publish(&topic, vec![text(&format!("{t}-{i}"))])
                            .unwrap()
                            .pop()
                            .unwrap()
                            .unwrap();
                        receipt.message_id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 400);
    let jobs = handed(&topics, &mut rx);
    assert_eq!(jobs.len(), 400);
    let mut bodies: Vec<&str> = jobs.iter().map(|j| j.message.message.as_str()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 400, "every publish's delivery, once");
    assert_eq!(topics.pending().unwrap(), 400);
}
