//! Notifying: the outcome recorded and notified once, retried final steps, the
//! notification record, and notifications at their size bounds.

use super::*;

#[tokio::test(start_paused = true)]
async fn an_oversized_job_message_is_truncated_recorded_and_notified_once() {
    // 300 KB of message: over SNS's 256 KiB. Before, the publish was refused after the
    // notification was claimed: the event went to the failure queue, then "already
    // notified", and nobody heard of the job.
    let message = format!(
        "{}\n\"{}\"",
        "row 1 loaded; ".repeat(20_000),
        "\u{1}".repeat(1_000)
    );
    let api = InMemoryJobApi::new();
    api.script(
        "job-1",
        [Ok(JobStatus::Succeeded {
            message: Some(message.clone()),
        })],
    );
    let recorded = Arc::new(Mutex::new(Vec::<String>::new()));
    let kept = recorded.clone();
    let outcome_recorded = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| {
            let matched = is_update(r, OUTCOME) && value(r, ":outcome") == Some("SUCCEEDED");
            if matched {
                kept.lock()
                    .unwrap()
                    .push(value(r, ":detail").unwrap().to_owned());
            }
            matched
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let aws = Aws::with(vec![
        claim_ok(),
        update_ok(STARTED),
        outcome_recorded,
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws
        .one_within(
            &api,
            &s3_put("reports/2026/11/21/sales.csv"),
            Duration::from_secs(30),
        )
        .await;

    assert_eq!(job.action, Action::Finished);
    let published = aws.published();
    assert_eq!(published.len(), 1, "notified once");
    assert_eq!(published[0]["outcome"], "SUCCEEDED");
    let detail = published[0]["detail"].as_str().unwrap();
    assert!(
        detail.len() <= crate::table::MAX_DETAIL_BYTES,
        "{}",
        detail.len()
    );
    assert!(
        detail.ends_with(&format!(" … [truncated: {} bytes in all]", message.len())),
        "{}",
        &detail[detail.len() - 60..]
    );
    assert!(message.starts_with(detail.split(" … [truncated").next().unwrap()));
    assert_eq!(
        *recorded.lock().unwrap(),
        [detail.to_owned()],
        "the item keeps the same text"
    );
}

#[tokio::test(start_paused = true)]
async fn a_notification_at_every_bound_fits_one_sns_message() {
    // The worst case for size: every character of the detail and the key escaped in
    // both JSON layers (control characters become \u00XX, then \\u00XX).
    let key = format!("reports/{}", "\u{1}".repeat(1_016));
    let n = Notification {
        job_id: Some("\u{1}".repeat(crate::job_api::MAX_JOB_ID_BYTES)),
        source: JobSource {
            bucket: "reports-bucket".to_owned(),
            key: key.clone(),
            etag: Some("\u{1}".repeat(64)),
            sequencer: Some("0".repeat(64)),
            version_id: Some("\u{1}".repeat(1_024)),
            uri: format!("s3://reports-bucket/{key}"),
        },
        source_id: "s".repeat(64),
        outcome: "SUCCEEDED".to_owned(),
        detail: crate::table::truncate_detail(
            "\u{1}".repeat(1 << 20),
            crate::table::MAX_DETAIL_BYTES,
        ),
        duration_ms: u64::MAX,
        generations: u32::MAX,
        started_at_ms: u64::MAX,
        finished_at_ms: u64::MAX,
    };
    let json = serde_json::to_string(&n).unwrap();
    let text = crate::outcome_text::email_text(&n, "jobs-table");
    let message = crate::outcome_text::per_protocol_message(&json, &text).unwrap();
    let size = message.len() + crate::outcome_text::subject(&n).len();
    assert!(size <= SNS_MAX_MESSAGE_BYTES, "{size} bytes");
}

#[tokio::test(start_paused = true)]
async fn stale_generation_records_nothing_once_the_turn_moved_on() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [succeeded()]);
    let aws = Aws::with(vec![
        turn_claimed(1),
        update_fails(OUTCOME),
        stored_turn(JobState::Running, 2, OTHER),
    ]);

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::Superseded);
    assert!(aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn retried_final_step_does_not_notify_twice() {
    // The first attempt recorded SUCCEEDED and published; a retry (same request id)
    // finds its own recorded outcome and a notification already sent.
    let api = InMemoryJobApi::new();
    let aws = Aws::with(retried_final_step(vec![update_fails(NOTIFY)]));

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::AlreadyNotified);
    assert!(aws.published().is_empty());
    assert_eq!(api.status_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn retried_final_step_publishes_if_the_first_attempt_did_not() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(retried_final_step(vec![
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]));

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::Finished);
    let published = aws.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["outcome"], "SUCCEEDED");
    assert_eq!(published[0]["detail"], "recorded earlier");
    assert_eq!(published[0]["generations"], 2);
    assert_eq!(published[0]["duration_ms"], 30_000);
}

#[tokio::test(start_paused = true)]
async fn failed_or_unanswered_publish_is_retryable_and_leaves_the_notification_unmarked() {
    for silent in [false, true] {
        let api = InMemoryJobApi::new();
        api.script("job-1", [succeeded()]);
        let mut aws = Aws::with(vec![
            turn_claimed(1),
            outcome_ok(JobState::Succeeded),
            update_ok(NOTIFY),
            update_ok(NOTIFIED),
        ]);
        aws.silent_sns = silent;
        aws.sns = vec![
            mock!(aws_sdk_sns::Client::publish)
                .sequence()
                .http_status(500, None)
                .repeatedly()
                .build(),
        ];

        let err = aws
            .handle(&api, &continuation(1, 1), Duration::from_secs(10))
            .await
            .unwrap_err();

        if silent {
            assert!(err.to_string().ends_with("failed: TimeoutError"), "{err}");
        }
        assert_eq!(FunctionError::from(err).error_type, "Retryable.Notify");
        assert_eq!(aws.dynamodb[3].num_calls(), 0, "notified_at not set");
    }
}

fn notified_fails_repeatedly() -> Rule {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| is_update(r, NOTIFIED))
        .sequence()
        .http_status(500, None)
        .repeatedly()
        .build()
}

#[tokio::test(start_paused = true)]
async fn published_but_unrecorded_notification_is_handed_to_a_record_invocation() {
    // Publishing worked; recording notified_at keeps failing. An error would make Lambda
    // retry, and the retry (same claim) would publish again: the invocation ends well,
    // and hands what only it knows (who published, the message id) to a fresh one.
    let api = InMemoryJobApi::new();
    api.script("job-1", [succeeded()]);
    let aws = Aws::with(finishing_turn(notified_fails_repeatedly()));

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::RecordHandedOff);
    assert_eq!(job.detail.as_deref(), Some("SUCCEEDED"));
    assert_eq!(aws.published().len(), 1);
    assert!(aws.dynamodb[3].num_calls() > 1, "recording was retried");
    let invoked = aws.invoked();
    assert_eq!(invoked.len(), 1, "{invoked:?}");
    assert_eq!(
        invoked[0],
        json!({"kind": "job-poller/record-notification", "source_id": SOURCE_ID,
               "notify_owner": ME, "message_id": "msg-1", "notified_at_ms": NOW,
               "outcome": "SUCCEEDED"})
    );
}

#[tokio::test(start_paused = true)]
async fn published_notification_neither_recorded_nor_handed_over_is_not_retried() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [succeeded()]);
    let mut aws = Aws::with(finishing_turn(notified_fails_repeatedly()));
    aws.silent_lambda = true;

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::NotifiedUnrecorded);
    assert_eq!(aws.published().len(), 1);
}

fn record_event() -> Value {
    serde_json::to_value(NotificationRecord::new(
        SOURCE_ID,
        OTHER,
        "msg-7",
        1_700_000_000_000,
        "FAILED",
    ))
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn record_invocation_records_the_publishers_notification_without_publishing() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![
        mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                is_update(r, NOTIFIED)
                    && value(r, ":me") == Some(OTHER)
                    && value(r, ":message") == Some("msg-7")
                    && r.expression_attribute_values()
                        .and_then(|v| v.get(":now"))
                        .and_then(|v| v.as_n().ok())
                        .is_some_and(|n| n == "1700000000000")
            })
            .then_output(|| UpdateItemOutput::builder().build()),
    ]);

    let job = aws.one(&api, &record_event()).await;

    assert_eq!(job.action, Action::NotificationRecorded);
    assert_eq!(job.detail.as_deref(), Some("FAILED"));
    assert_eq!(aws.dynamodb[0].num_calls(), 1);
    assert!(aws.published().is_empty());
    assert!(aws.invoked().is_empty());
}

#[tokio::test(start_paused = true)]
async fn record_invocation_for_a_claim_not_the_publishers_records_nothing() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![update_fails(NOTIFIED)]);

    let job = aws.one(&api, &record_event()).await;

    assert_eq!(job.action, Action::Superseded);
    assert!(aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn record_invocation_that_cannot_write_fails_retryably() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![notified_fails_repeatedly()]);

    let err = aws
        .handle(&api, &record_event(), Duration::from_secs(5))
        .await
        .unwrap_err();

    assert_eq!(FunctionError::from(err).error_type, "Retryable.JobsTable");
    assert!(
        aws.dynamodb[0].num_calls() > 1,
        "retried within the invocation"
    );
    assert!(aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn too_little_time_left_to_publish_defers_the_notification_unpublished() {
    // The retry of a final step finds its outcome recorded, but only 0.9 s of work time
    // is left: less than a publish may need, so it publishes nothing and asks for a retry.
    let api = InMemoryJobApi::new();
    let aws = Aws::with(retried_final_step(vec![
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]));

    let err = aws
        .handle(&api, &continuation(1, 1), Duration::from_millis(1200))
        .await
        .unwrap_err();

    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("was not published"), "{err}");
    assert_eq!(FunctionError::from(err).error_type, "Retryable.Notify");
    assert!(aws.published().is_empty());
    assert_eq!(aws.dynamodb[3].num_calls(), 0, "notified_at not set");
}
