//! Following: polling, hand-over, next generations' turns, and taking over a job
//! whose holder is gone.

use super::*;

/// The ordinary next-turn claim (`#gen = :prev`) finds the turn not available.
fn next_turn_unavailable() -> Rule {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            is_update(r, TURN) && !r.condition_expression().unwrap_or("").contains(":old")
        })
        .then_error(ccf_update)
}

/// The take-over claim (holder `:old`, lease ended): applied or not, and what it asked.
fn take_over(applied: bool, seen: Arc<Mutex<Vec<(String, String, String)>>>) -> Rule {
    let rule = mock!(aws_sdk_dynamodb::Client::update_item).match_requests(move |r| {
        let matched = is_update(r, TURN) && r.condition_expression().unwrap_or("").contains(":old");
        if matched {
            let number = |name: &str| {
                r.expression_attribute_values()
                    .and_then(|v| v.get(name))
                    .and_then(|v| v.as_n().ok())
                    .cloned()
                    .unwrap_or_default()
            };
            seen.lock().unwrap().push((
                value(r, ":old").unwrap_or_default().to_owned(),
                number(":gen"),
                number(":now"),
            ));
        }
        matched
    });
    if applied {
        rule.then_output(|| {
            UpdateItemOutput::builder()
                .set_attributes(Some(item(
                    SOURCE_ID,
                    JobState::Running,
                    Some("job-1"),
                    Some(4),
                    Some(ME),
                )))
                .build()
        })
    } else {
        rule.then_error(ccf_update)
    }
}

#[tokio::test(start_paused = true)]
async fn a_redriven_generation_takes_over_a_job_whose_holder_is_gone_and_finishes_it() {
    // Generation 3 failed Lambda's retries: its event went to the failure queue and is
    // redriven, with a new request id. The item still names the dead invocation.
    let api = InMemoryJobApi::new();
    api.script("job-1", [succeeded()]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let aws = Aws::with(vec![
        next_turn_unavailable(),
        stored(lapsed(
            item(
                SOURCE_ID,
                JobState::Running,
                Some("job-1"),
                Some(3),
                Some("req-dead"),
            ),
            NOW - 1,
        )),
        take_over(true, seen.clone()),
        outcome_ok(JobState::Succeeded),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws.one(&api, &continuation(3, 20)).await;

    assert_eq!(job.action, Action::Finished, "{job:?}");
    assert_eq!(
        *seen.lock().unwrap(),
        [("req-dead".to_owned(), "4".to_owned(), NOW.to_string())],
        "took generation 4 from the dead holder of generation 3"
    );
    let published = aws.published();
    assert_eq!(published.len(), 1, "notified once");
    assert_eq!(published[0]["outcome"], "SUCCEEDED");
    assert_eq!(published[0]["generations"], 5);
}

#[tokio::test(start_paused = true)]
async fn a_redriven_s3_event_takes_over_a_started_job_whose_holder_is_gone() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [succeeded()]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let aws = Aws::with(vec![
        claim_exists(),
        stored(lapsed(
            item(
                SOURCE_ID,
                JobState::Running,
                Some("job-1"),
                Some(0),
                Some("req-dead"),
            ),
            NOW - 1,
        )),
        take_over(true, seen.clone()),
        outcome_ok(JobState::Succeeded),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws.one(&api, &s3_put("reports/2026/11/21/sales.csv")).await;

    assert_eq!(job.action, Action::Finished, "{job:?}");
    assert_eq!(seen.lock().unwrap()[0].1, "1");
    assert_eq!(api.starts().len(), 0, "no second job started");
    assert_eq!(aws.published().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_holder_whose_lease_has_not_ended_keeps_the_job() {
    let api = InMemoryJobApi::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let aws = Aws::with(vec![
        next_turn_unavailable(),
        stored_turn(JobState::Running, 3, OTHER),
        take_over(true, seen.clone()),
    ]);

    let job = aws.one(&api, &continuation(3, 20)).await;

    assert_eq!(job.action, Action::Duplicate);
    assert!(seen.lock().unwrap().is_empty(), "no take-over tried");
    assert_eq!(api.status_calls(), 0);
    assert!(aws.published().is_empty() && aws.invoked().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_take_over_that_loses_the_race_does_nothing() {
    // The lease had ended, but a queued next generation (or the holder's own retry)
    // claimed first: the condition fails and this invocation leaves the job alone.
    let api = InMemoryJobApi::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let aws = Aws::with(vec![
        next_turn_unavailable(),
        stored(lapsed(
            item(
                SOURCE_ID,
                JobState::Running,
                Some("job-1"),
                Some(3),
                Some("req-dead"),
            ),
            NOW - 1,
        )),
        take_over(false, seen.clone()),
    ]);

    let job = aws.one(&api, &continuation(3, 20)).await;

    assert_eq!(job.action, Action::Duplicate);
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(api.status_calls(), 0);
    assert!(aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_outcome_whose_notifier_is_gone_is_notified_once_by_the_redrive() {
    let api = InMemoryJobApi::new();
    let mut stuck = lapsed(
        item(
            SOURCE_ID,
            JobState::Succeeded,
            Some("job-1"),
            Some(2),
            Some("req-dead"),
        ),
        NOW - 1,
    );
    stuck.insert(
        "notify_owner".to_owned(),
        AttributeValue::S("req-dead".to_owned()),
    );
    let taken = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            r.condition_expression()
                .is_some_and(|c| c.contains("#nowner = :old"))
                && value(r, ":old") == Some("req-dead")
                && value(r, ":me") == Some(ME)
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let aws = Aws::with(vec![
        next_turn_unavailable(),
        stored(stuck),
        taken,
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws.one(&api, &continuation(3, 20)).await;

    assert_eq!(job.action, Action::Finished, "{job:?}");
    let published = aws.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["outcome"], "SUCCEEDED");
    assert_eq!(published[0]["detail"], "recorded earlier");
}

#[tokio::test(start_paused = true)]
async fn next_generation_claims_its_turn_and_reports_generations_used() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running(), succeeded()]);
    let aws = Aws::with(vec![
        turn_claimed(2),
        outcome_ok(JobState::Succeeded),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws.one(&api, &continuation(2, 0)).await;

    assert_eq!(job.action, Action::Finished);
    assert_eq!(job.generation, Some(2));
    let published = aws.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["generations"], 3);
    assert_eq!(published[0]["started_at_ms"], 1_700_000_001_000u64);
    assert_eq!(published[0]["duration_ms"], NOW - 1_700_000_001_000);
}

#[tokio::test(start_paused = true)]
async fn duplicate_invocation_of_a_generation_loses_the_claim_and_exits_quietly() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running()]);
    let aws = Aws::with(vec![
        update_fails(TURN),
        stored_turn(JobState::Running, 1, OTHER),
    ]);

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::Duplicate);
    assert_eq!(api.status_calls(), 0);
    assert!(aws.invoked().is_empty() && aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn retry_of_the_same_invocation_resumes_its_own_turn() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running()]);
    let aws = Aws::with(vec![
        update_fails(TURN),
        stored_turn(JobState::Running, 1, ME),
    ]);

    let job = aws
        .one_within(&api, &continuation(1, 1), Duration::from_secs(5))
        .await;

    assert_eq!(job.action, Action::HandedOff);
    assert!(api.status_calls() > 0);
    assert_eq!(aws.invoked()[0]["generation"], 2);
    assert_eq!(aws.invoked()[0]["budget_remaining"], 0);
}

#[tokio::test(start_paused = true)]
async fn last_generation_still_running_ends_with_budget_exhausted_once() {
    let api = InMemoryJobApi::new();
    api.script("job-1", [running()]);
    let aws = Aws::with(vec![
        turn_claimed(2),
        outcome_ok(JobState::BudgetExhausted),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws
        .one_within(&api, &continuation(2, 0), Duration::from_secs(5))
        .await;

    assert_eq!(job.action, Action::Finished);
    assert!(aws.invoked().is_empty(), "no generation past the budget");
    let published = aws.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["outcome"], "BUDGET_EXHAUSTED");
    assert_eq!(published[0]["generations"], 3);
}

#[tokio::test(start_paused = true)]
async fn job_unknown_to_the_api_is_a_failure_outcome() {
    let api = InMemoryJobApi::new(); // knows no job
    let aws = Aws::with(vec![
        turn_claimed(1),
        outcome_ok(JobState::Failed),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::Finished);
    let published = aws.published();
    assert_eq!(published[0]["outcome"], "FAILED");
    assert!(
        published[0]["detail"].as_str().unwrap().contains("404"),
        "{}",
        published[0]
    );
}

#[tokio::test(start_paused = true)]
async fn failed_job_is_a_failure_outcome_with_the_api_message() {
    let api = InMemoryJobApi::new();
    api.script(
        "job-1",
        [Ok(JobStatus::Failed {
            message: Some("column 7 is not a date".to_owned()),
        })],
    );
    let aws = Aws::with(vec![
        turn_claimed(1),
        outcome_ok(JobState::Failed),
        update_ok(NOTIFY),
        update_ok(NOTIFIED),
    ]);

    aws.handle(&api, &continuation(1, 1), Duration::from_secs(10))
        .await
        .unwrap();

    assert_eq!(aws.published()[0]["detail"], "column 7 is not a date");
}

#[tokio::test(start_paused = true)]
async fn transient_status_errors_are_retried_and_do_not_end_the_job() {
    let api = InMemoryJobApi::new();
    let flaky = || {
        Err(ApiError::Transient {
            operation: "get job status",
            detail: "HTTP 502".to_owned(),
        })
    };
    api.script("job-1", [flaky(), flaky(), succeeded()]);
    let aws = Aws::with(finishing_turn(update_ok(NOTIFIED)));

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::Finished);
    assert_eq!(api.status_calls(), 3);
    assert_eq!(aws.published()[0]["outcome"], "SUCCEEDED");
}

#[tokio::test(start_paused = true)]
async fn api_down_for_a_whole_generation_hands_over_instead_of_failing() {
    let api = InMemoryJobApi::new();
    api.script(
        "job-1",
        [Err(ApiError::Transient {
            operation: "get job status",
            detail: "connection refused".to_owned(),
        })],
    );
    let aws = Aws::with(vec![turn_claimed(1)]);

    let job = aws.one(&api, &continuation(1, 1)).await;

    assert_eq!(job.action, Action::HandedOff);
    assert!(aws.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn continuation_for_an_unknown_item_is_a_permanent_error() {
    let api = InMemoryJobApi::new();
    let aws = Aws::with(vec![
        update_fails(TURN),
        mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| GetItemOutput::builder().build()),
    ]);
    let err = aws
        .handle(&api, &continuation(1, 1), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(
        FunctionError::from(err).error_type,
        "Permanent.UnknownSource"
    );
}

#[tokio::test(start_paused = true)]
async fn failed_or_unanswered_hand_over_is_a_retryable_error() {
    for silent in [false, true] {
        let api = InMemoryJobApi::new();
        api.script("job-1", [running()]);
        let mut aws = Aws::with(vec![turn_claimed(1)]);
        aws.silent_lambda = silent;
        aws.lambda = vec![
            mock!(aws_sdk_lambda::Client::invoke)
                .sequence()
                .http_status(503, None)
                .repeatedly()
                .build(),
        ];

        let err = aws
            .handle(&api, &continuation(1, 1), Duration::from_secs(5))
            .await
            .unwrap_err();

        assert!(err.is_retryable(), "{err}");
        if silent {
            // Cut off at the deadline, not left hanging until the runtime kills it.
            assert!(err.to_string().ends_with("failed: TimeoutError"), "{err}");
        } else {
            assert!(aws.lambda[0].num_calls() > 1, "retried before giving up");
        }
        assert_eq!(FunctionError::from(err).error_type, "Retryable.HandOff");
    }
}
