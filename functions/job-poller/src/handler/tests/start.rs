//! Starting: new reports, redeliveries, unfinished and lost starts, rejected and
//! failing starts, and what is not a report.

use super::*;

#[tokio::test(start_paused = true)]
async fn new_report_starts_one_job_follows_it_and_notifies_success_once() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running(), running(), succeeded()]);
    let aws = Aws::with(vec![
        claim_ok(),
        update_ok(STARTED),
        outcome_ok(JobState::Succeeded),
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
    assert_eq!(job.job_id.as_deref(), Some("job-1"));
    let starts = api.starts();
    assert_eq!(starts.len(), 1);
    assert_eq!(
        starts[0].source.uri,
        "s3://reports-bucket/reports/2026/11/21/sales.csv"
    );
    assert!(starts[0].idempotency_key.starts_with("sluice-job-poller-"));
    assert_eq!(api.status_calls(), 3);
    let published = aws.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["outcome"], "SUCCEEDED");
    assert_eq!(published[0]["job_id"], "job-1");
    assert_eq!(published[0]["generations"], 1);
    assert_eq!(published[0]["detail"], "1200 rows loaded");
    assert_eq!(
        published[0]["source"]["key"],
        "reports/2026/11/21/sales.csv"
    );
    assert_eq!(published[0]["source_id"], SOURCE_ID);
    let emails = aws.emails();
    assert_eq!(emails.len(), 1);
    let (subject, text) = &emails[0];
    assert!(
        subject.starts_with("sluice job job-1: SUCCEEDED in "),
        "{subject}"
    );
    assert!(
        text.starts_with("Job job-1 finished: it succeeded.\n"),
        "{text}"
    );
    assert!(text.contains("\nDetail:      1200 rows loaded\n"), "{text}");
    assert!(text.contains("jobs table jobs, source_id "), "{text}");
    assert!(aws.invoked().is_empty());
    assert_eq!(
        aws.dynamodb[4].num_calls(),
        1,
        "notification marked as sent"
    );
}

#[tokio::test(start_paused = true)]
async fn job_outlasting_the_invocation_hands_over_before_the_margin() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running()]);
    let aws = Aws::with(vec![claim_ok(), update_ok(STARTED)]);
    let poller = aws.poller(&api);
    let inv = invocation(Duration::from_secs(10));

    let job = only(
        poller
            .handle(&s3_put("reports/2026/11/21/sales.csv"), &inv)
            .await
            .unwrap(),
    );

    assert_eq!(job.action, Action::HandedOff);
    let invoked = aws.invoked();
    assert_eq!(invoked.len(), 1);
    assert_eq!(invoked[0]["kind"], "job-poller/continue");
    assert_eq!(invoked[0]["job_id"], "job-1");
    assert_eq!(invoked[0]["source_id"], SOURCE_ID);
    assert_eq!(invoked[0]["generation"], 1);
    assert_eq!(
        invoked[0]["budget_remaining"], 1,
        "MAX_GENERATIONS 3: generations 1 and 2 left"
    );
    assert!(
        Instant::now() <= inv.deadline.instant() - MARGIN,
        "never slept into the margin"
    );
    assert!(aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn poll_interval_backs_off_to_its_maximum_and_stops_before_the_margin() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running()]);
    let aws = Aws::with(vec![claim_ok(), update_ok(STARTED)]);
    let poller = aws.poller(&api);
    let inv = invocation(Duration::from_secs(10));
    let start = Instant::now();

    poller.handle(&s3_put("reports/a.csv"), &inv).await.unwrap();

    let times: Vec<Duration> = api.status_call_times().iter().map(|t| *t - start).collect();
    let expected: Vec<Duration> = [0, 500, 1500, 2500, 3500, 4500, 5500, 6500, 7500]
        .into_iter()
        .map(Duration::from_millis)
        .collect();
    assert_eq!(times, expected);
    // The handover carries where the interval had got to.
    assert_eq!(aws.invoked()[0]["poll_attempt"], 9);
}

#[tokio::test(start_paused = true)]
async fn redelivered_s3_event_starts_no_second_job() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![
        claim_exists(),
        stored_turn(JobState::Running, 2, OTHER),
    ]);

    let job = aws
        .one_within(
            &api,
            &s3_put("reports/2026/11/21/sales.csv"),
            Duration::from_secs(30),
        )
        .await;

    assert_eq!(job.action, Action::Duplicate);
    assert_eq!(job.job_id.as_deref(), Some("job-1"));
    assert!(api.starts().is_empty());
    assert_eq!(api.status_calls(), 0);
    assert!(aws.invoked().is_empty() && aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn redelivery_after_a_finished_job_is_a_duplicate_too() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![
        claim_exists(),
        stored_turn(JobState::Succeeded, 4, OTHER),
    ]);
    let job = aws
        .one_within(
            &api,
            &s3_put("reports/2026/11/21/sales.csv"),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(job.action, Action::Duplicate);
    assert_eq!(job.detail.as_deref(), Some("already SUCCEEDED"));
    assert!(api.starts().is_empty());
}

#[tokio::test(start_paused = true)]
async fn start_claimed_but_never_recorded_is_resumed_with_the_stored_idempotency_key() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [succeeded()]);
    let aws = Aws::with(vec![
        claim_exists(),
        stored(item(SOURCE_ID, JobState::Starting, None, None, None)),
        update_ok(STARTED),
        outcome_ok(JobState::Succeeded),
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
    assert_eq!(api.starts().len(), 1);
    assert_eq!(api.starts()[0].idempotency_key, "sluice-job-poller-test");
    assert_eq!(aws.published().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_delivery_that_loses_generation_zero_does_not_poll() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running()]);
    let aws = Aws::with(vec![
        claim_ok(),
        update_fails(STARTED),
        stored_turn(JobState::Running, 0, OTHER),
    ]);

    let job = aws
        .one_within(
            &api,
            &s3_put("reports/2026/11/21/sales.csv"),
            Duration::from_secs(30),
        )
        .await;

    assert_eq!(job.action, Action::Duplicate);
    assert_eq!(api.status_calls(), 0);
    assert!(aws.invoked().is_empty());
}

#[tokio::test(start_paused = true)]
async fn start_recorded_but_its_answer_lost_is_still_followed_by_this_invocation() {
    // The first `record_started` was applied but its answer never arrived; the retried
    // write fails its condition against this invocation's own turn (the fault proxy's
    // lost UpdateItem answer). Before, the job was started and never followed.
    let api = InMemoryJobApi::new();
    api.script("job-1", [running(), succeeded()]);
    let aws = Aws::with(vec![
        claim_ok(),
        update_fails(STARTED),
        stored_turn(JobState::Running, 0, ME),
        outcome_ok(JobState::Succeeded),
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
    assert_eq!(api.starts().len(), 1);
    assert_eq!(api.status_calls(), 2);
    let published = aws.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["outcome"], "SUCCEEDED");
    assert_eq!(published[0]["generations"], 1);
}

#[tokio::test(start_paused = true)]
async fn rejected_start_is_recorded_as_failed_and_notified_without_a_job_id() {
    let api = InMemoryJobApi::new();
    api.fail_starts([ApiError::Rejected {
        operation: "start job",
        status: 422,
        body: "not a report".to_owned(),
    }]);
    let outcome_from_starting = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            is_update(r, OUTCOME)
                && value(r, ":from") == Some("STARTING")
                && r.condition_expression() == Some("#state = :from")
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let aws = Aws::with(vec![
        claim_ok(),
        outcome_from_starting,
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
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["outcome"], "FAILED");
    assert_eq!(published[0]["job_id"], Value::Null);
    assert!(
        published[0]["detail"]
            .as_str()
            .unwrap()
            .contains("HTTP 422"),
        "{}",
        published[0]
    );
}

#[tokio::test(start_paused = true)]
async fn start_failing_transiently_past_the_margin_is_a_retryable_error() {
    let api = InMemoryJobApi::new();
    api.fail_starts((0..1000).map(|_| ApiError::Transient {
        operation: "start job",
        detail: "HTTP 503".to_owned(),
    }));
    let aws = Aws::with(vec![claim_ok(), update_ok(STARTED)]);

    let err = aws
        .handle(
            &api,
            &s3_put("reports/2026/11/21/sales.csv"),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();

    assert!(err.is_retryable(), "{err}");
    assert_eq!(FunctionError::from(err).error_type, "Retryable.JobStart");
    assert!(api.starts().len() > 1, "retried within the invocation");
    assert_eq!(aws.dynamodb[1].num_calls(), 0, "no job recorded");
}

#[tokio::test(start_paused = true)]
async fn non_reports_are_skipped_without_touching_the_table() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![claim_ok()]);
    let mut removed = s3_put("reports/old.csv");
    removed["Records"][0]["eventName"] = json!("ObjectRemoved:Delete");
    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-21T06:00:00.000Z", "Bucket": "reports-bucket", "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"});

    for (event, why) in [
        (s3_put("exports/sales.csv"), "outside REPORT_PREFIX"),
        (s3_put("reports/2026/"), "folder marker"),
        (removed, "not an ObjectCreated event"),
        (test_event, "s3:TestEvent"),
    ] {
        let job = aws.one_within(&api, &event, Duration::from_secs(30)).await;
        assert_eq!(job.action, Action::Skipped);
        assert_eq!(job.detail.as_deref(), Some(why));
    }
    assert_eq!(num_calls(&aws.dynamodb), 0);
    assert!(api.starts().is_empty());
}

#[tokio::test(start_paused = true)]
async fn unreadable_event_is_a_permanent_error() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![]);
    let err = aws
        .handle(&api, &json!({"detail": "?"}), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(
        FunctionError::from(err).error_type,
        "Permanent.InvalidEvent"
    );
}

#[tokio::test(start_paused = true)]
async fn a_notification_naming_another_bucket_starts_no_job_and_is_refused() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![claim_ok()]);
    let forged: Value = serde_json::from_str(
        &s3_put("reports/2026/11/21/sales.csv")
            .to_string()
            .replace("reports-bucket", "someone-elses-bucket"),
    )
    .unwrap();
    let err = aws
        .handle(&api, &forged, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("someone-elses-bucket"), "{err}");
    assert_eq!(
        FunctionError::from(err).error_type,
        "Permanent.ForeignBucket"
    );
    assert_eq!(num_calls(&aws.dynamodb), 0);
    assert!(api.starts().is_empty());
}
