//! Deadlines, full-jitter backoff, and the one place where SDK errors are classified
//! transient (worth another attempt) or permanent.
//!
//! Time is read from `tokio::time::Instant`, which is `std::time::Instant` in a normal
//! build and follows tokio's paused clock under `#[tokio::test(start_paused = true)]`,
//! so retry loops can be tested without sleeping.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use rand::Rng;
use tokio::time::Instant;

/// Error code reported for batch entries that were not (or no longer) attempted
/// because the deadline had passed.
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
/// Error code reported when a batch response carried no result for an entry.
pub const MISSING_RESULT_ENTRY: &str = "MissingResultEntry";

/// Error codes that mean "slow down": always worth another attempt after a pause.
///
/// `LimitExceededException` is Kinesis' per-shard read/write throttle; elsewhere
/// (DynamoDB control plane) it also means "too many concurrent requests", so it is
/// treated as throttling everywhere, as the SDK itself does.
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "SlowDown",
    "KMSThrottlingException",
    "TransactionInProgressException",
    "PriorRequestNotComplete",
];

/// Error codes that name a passing service-side condition rather than a bad request,
/// even when they arrive with a 4xx status (S3 `RequestTimeout` is a 400; a DynamoDB
/// `TransactionConflictException` clears once the competing transaction ends).
pub const TRANSIENT_CODES: &[&str] = &[
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "TransactionConflictException",
];

/// Whether an error code, on its own, marks a transient condition.
pub fn is_transient_code(code: &str) -> bool {
    THROTTLING_CODES.contains(&code) || TRANSIENT_CODES.contains(&code)
}

/// Classifies an SDK error: throttling codes, 5xx and 429 responses, timeouts and
/// connection (dispatch) failures are transient; other modeled 4xx errors, requests
/// that could not be built, and connector errors caused by our own input are permanent.
pub fn is_transient<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::TimeoutError(_) => true,
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        // A response arrived but could not be read or parsed (cut off mid-body).
        SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => {
            let status = service.raw().status();
            service.err().code().is_some_and(is_transient_code)
                || status.is_server_error()
                || status.as_u16() == 429
        }
        // ConstructionFailure and anything added later: not retried.
        _ => false,
    }
}

/// The code to report for an SDK error: the service's error code when there is one,
/// else the kind of failure (`TimeoutError`, `DispatchFailure`, `HTTP 503`, …).
pub fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> String {
    match err {
        SdkError::ServiceError(service) => match service.err().code() {
            Some(code) => code.to_owned(),
            None => format!("HTTP {}", service.raw().status().as_u16()),
        },
        SdkError::TimeoutError(_) => "TimeoutError".to_owned(),
        SdkError::DispatchFailure(_) => "DispatchFailure".to_owned(),
        SdkError::ResponseError(_) => "ResponseError".to_owned(),
        SdkError::ConstructionFailure(_) => "ConstructionFailure".to_owned(),
        _ => "Unknown".to_owned(),
    }
}

/// A human-readable description of an SDK error: the service's message, or the whole
/// error chain when there is no message.
pub fn error_message<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err.message() {
        Some(message) => message.to_owned(),
        None => DisplayErrorContext(err).to_string(),
    }
}

/// An error that knows whether another attempt could succeed.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

impl<E: ProvideErrorMetadata> Transient for SdkError<E, HttpResponse> {
    fn is_transient(&self) -> bool {
        is_transient(self)
    }
}

/// A point in time by which work must be finished (typically the Lambda invocation
/// deadline minus a margin for reporting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

/// Stand-in for "no deadline" when a duration is too large to add to now.
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

impl Deadline {
    pub fn at(instant: Instant) -> Self {
        Self { at: instant }
    }

    /// `duration` from now.
    pub fn after(duration: Duration) -> Self {
        let now = Instant::now();
        let at = now
            .checked_add(duration)
            .unwrap_or_else(|| now + FAR_FUTURE);
        Self { at }
    }

    /// From a wall-clock deadline in milliseconds since the Unix epoch, as the Lambda
    /// runtime gives it (`Lambda-Runtime-Deadline-Ms`, `Context::deadline`).
    pub fn at_epoch_ms(epoch_ms: u64) -> Self {
        Self::at_epoch_ms_from(epoch_ms, SystemTime::now())
    }

    /// As [`Deadline::at_epoch_ms`], with the current wall-clock time given. A deadline
    /// already in the past is past now.
    pub fn at_epoch_ms_from(epoch_ms: u64, now: SystemTime) -> Self {
        let target = UNIX_EPOCH + Duration::from_millis(epoch_ms);
        Self::after(target.duration_since(now).unwrap_or(Duration::ZERO))
    }

    pub fn instant(&self) -> Instant {
        self.at
    }

    /// Time left; zero once past.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    pub fn is_past(&self) -> bool {
        Instant::now() >= self.at
    }

    /// An earlier deadline, `margin` before this one (kept for logging, flushing, and
    /// answering the runtime).
    pub fn with_margin(&self, margin: Duration) -> Self {
        let at = self
            .at
            .checked_sub(margin)
            .unwrap_or_else(|| self.at.min(Instant::now()));
        Self { at }
    }

    /// Whether sleeping `delay` from now would still wake strictly before the deadline.
    pub fn allows_sleep(&self, delay: Duration) -> bool {
        delay < self.remaining()
    }

    /// Runs an SDK call, giving up when the deadline passes: the call is dropped
    /// (cancelled) and the result is a [`SdkError::TimeoutError`], which
    /// [`is_transient`] calls transient and [`error_code`] reports as `TimeoutError`.
    /// A slow service then ends in a reported failure before the function's own
    /// timeout, never in the runtime killing the invocation mid-write. A cancelled
    /// write may still have been applied (its outcome is unknown), so callers keep to
    /// at-least-once: they retry or report it, never count it as written.
    pub async fn bound<T, E, R, F>(&self, call: F) -> Result<T, SdkError<E, R>>
    where
        F: Future<Output = Result<T, SdkError<E, R>>>,
    {
        match tokio::time::timeout_at(self.at, call).await {
            Ok(result) => result,
            Err(_) => Err(SdkError::timeout_error(DeadlinePassed)),
        }
    }
}

/// The error inside the [`SdkError::TimeoutError`] of a call cut off by
/// [`Deadline::bound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no answer before the invocation deadline")]
pub struct DeadlinePassed;

/// Exponential backoff with full jitter: the delay before retry `n` (0-based) is drawn
/// uniformly from `[0, min(max, initial × multiplierⁿ)]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
}

impl Default for Backoff {
    /// 100 ms doubling up to 2 s: a few attempts fit in a typical Lambda timeout.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            multiplier: 2.0,
        }
    }
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration, multiplier: f64) -> Self {
        Self {
            initial,
            max,
            multiplier,
        }
    }

    /// Retry immediately (still bounded by the deadline and by the error class).
    pub const fn none() -> Self {
        Self::new(Duration::ZERO, Duration::ZERO, 1.0)
    }

    /// The upper bound of the jittered delay before retry `attempt` (0-based).
    /// A multiplier below 1 is treated as 1; the result never exceeds `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// A delay before retry `attempt`, drawn with the thread-local generator.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, &mut rand::rng())
    }

    /// A delay before retry `attempt`, drawn from `rng`.
    pub fn delay_with<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        if ceiling == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(rng.random_range(0..=ceiling))
        }
    }
}

/// Sleeps the backoff delay for retry `attempt` if that sleep ends before the
/// deadline; returns `false` (without sleeping) if it would not.
pub(crate) async fn pause_before_retry(
    backoff: &Backoff,
    attempt: u32,
    deadline: &Deadline,
) -> bool {
    let delay = backoff.delay(attempt);
    if !deadline.allows_sleep(delay) {
        return false;
    }
    tokio::time::sleep(delay).await;
    true
}

/// Runs `op` until it succeeds, fails permanently, or the next backoff sleep would
/// not end before `deadline`; returns the last result. The first attempt is always
/// made; no sleep ever ends past the deadline.
pub async fn retry_transient<T, E, F, Fut>(
    backoff: &Backoff,
    deadline: &Deadline,
    op: F,
) -> Result<T, E>
where
    E: Transient,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_transient_if(backoff, deadline, E::is_transient, op).await
}

/// One SDK call, retried: [`retry_transient`] until `retry_until`, every attempt cut
/// off at `cut_at` ([`Deadline::bound`]). The two differ where no attempt may start
/// late (`retry_until` earlier) but one that started may finish (`cut_at`).
pub async fn retry_sdk_call<T, E, F, Fut>(
    backoff: &Backoff,
    retry_until: &Deadline,
    cut_at: &Deadline,
    mut call: F,
) -> Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    retry_transient(backoff, retry_until, || cut_at.bound(call())).await
}

/// As [`retry_transient`], with the classification given: `is_transient(&err)` decides
/// whether `err` is worth another attempt.
pub async fn retry_transient_if<T, E, F, Fut, C>(
    backoff: &Backoff,
    deadline: &Deadline,
    is_transient: C,
    mut op: F,
) -> Result<T, E>
where
    C: Fn(&E) -> bool,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0u32;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(err) => {
                if !is_transient(&err) {
                    return Err(err);
                }
                if !pause_before_retry(backoff, attempt, deadline).await {
                    tracing::debug!(
                        attempts = attempt + 1,
                        "transient failure; no time left to retry"
                    );
                    return Err(err);
                }
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{http_response, json_error};
    use aws_sdk_kinesis::operation::put_records::PutRecordsError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::cell::RefCell;

    type KinesisSdkError = SdkError<PutRecordsError, HttpResponse>;

    fn service_error(status: u16, code: Option<&str>) -> KinesisSdkError {
        let mut meta = aws_smithy_types::error::ErrorMetadata::builder();
        if let Some(code) = code {
            meta = meta.code(code);
        }
        SdkError::service_error(
            PutRecordsError::generic(meta.build()),
            http_response(status, ""),
        )
    }

    #[test]
    fn throttling_codes_are_transient_even_with_400() {
        for code in [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "RequestLimitExceeded",
            "SlowDown",
            "TooManyRequestsException",
            "LimitExceededException",
            "KMSThrottlingException",
        ] {
            assert!(is_transient(&service_error(400, Some(code))), "{code}");
        }
    }

    #[test]
    fn server_errors_and_429_are_transient_without_a_code() {
        assert!(is_transient(&service_error(500, None)));
        assert!(is_transient(&service_error(503, None)));
        assert!(is_transient(&service_error(429, None)));
    }

    #[test]
    fn modeled_4xx_errors_are_permanent() {
        assert!(!is_transient(&service_error(
            400,
            Some("ResourceNotFoundException")
        )));
        assert!(!is_transient(&service_error(
            400,
            Some("ValidationException")
        )));
        assert!(!is_transient(&service_error(
            403,
            Some("AccessDeniedException")
        )));
        assert!(!is_transient(&service_error(404, None)));
    }

    #[test]
    fn timeouts_and_io_failures_are_transient_but_user_connector_errors_are_not() {
        let timeout: KinesisSdkError = SdkError::timeout_error("operation timed out");
        let io: KinesisSdkError =
            SdkError::dispatch_failure(ConnectorError::io("connection reset".into()));
        let connect_timeout: KinesisSdkError =
            SdkError::dispatch_failure(ConnectorError::timeout("connect timed out".into()));
        let user: KinesisSdkError =
            SdkError::dispatch_failure(ConnectorError::user("bad uri".into()));
        let construction: KinesisSdkError = SdkError::construction_failure("missing field");
        assert!(is_transient(&timeout));
        assert!(is_transient(&io));
        assert!(is_transient(&connect_timeout));
        assert!(!is_transient(&user));
        assert!(!is_transient(&construction));
    }

    #[test]
    fn error_code_names_service_code_or_failure_kind() {
        assert_eq!(
            error_code(&service_error(400, Some("ResourceNotFoundException"))),
            "ResourceNotFoundException"
        );
        assert_eq!(error_code(&service_error(503, None)), "HTTP 503");
        assert_eq!(
            error_code::<PutRecordsError>(&SdkError::timeout_error("t")),
            "TimeoutError"
        );
    }

    #[test]
    fn backoff_ceiling_grows_by_multiplier_and_stops_at_max() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 2.0);
        assert_eq!(backoff.ceiling(0), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(1), Duration::from_millis(200));
        assert_eq!(backoff.ceiling(3), Duration::from_millis(800));
        assert_eq!(backoff.ceiling(4), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn backoff_delays_use_full_jitter_range_and_never_exceed_max() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 2.0);
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in [0, 2, 10] {
            let ceiling = backoff.ceiling(attempt);
            let draws: Vec<Duration> = (0..2_000)
                .map(|_| backoff.delay_with(attempt, &mut rng))
                .collect();
            let smallest = *draws.iter().min().unwrap();
            let largest = *draws.iter().max().unwrap();
            assert!(
                largest <= ceiling && ceiling <= backoff.max,
                "attempt {attempt}: {largest:?}"
            );
            // Full jitter: draws reach down near zero and up near the ceiling.
            assert!(
                smallest < ceiling / 20,
                "attempt {attempt}: smallest {smallest:?}"
            );
            assert!(
                largest > ceiling * 19 / 20,
                "attempt {attempt}: largest {largest:?}"
            );
        }
    }

    #[test]
    fn zero_backoff_never_waits() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(Backoff::none().delay_with(5, &mut rng), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_from_epoch_ms_counts_down_from_wall_clock() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let deadline = Deadline::at_epoch_ms_from(1_700_000_000_000 + 3_000, now);
        assert_eq!(deadline.remaining(), Duration::from_secs(3));
        let past = Deadline::at_epoch_ms_from(1_700_000_000_000 - 1, now);
        assert!(past.is_past());
        assert_eq!(past.remaining(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn margin_gives_an_earlier_deadline() {
        let deadline = Deadline::after(Duration::from_secs(10));
        let earlier = deadline.with_margin(Duration::from_secs(4));
        assert_eq!(earlier.remaining(), Duration::from_secs(6));
        assert!(earlier < deadline);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(earlier.is_past());
        assert!(!deadline.is_past());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_with_no_answer_ends_at_the_deadline_as_a_transient_timeout() {
        let deadline = Deadline::after(Duration::from_secs(3));
        let started = Instant::now();
        let never = std::future::pending::<Result<u32, KinesisSdkError>>();
        let err = deadline.bound(never).await.unwrap_err();
        assert_eq!(Instant::now() - started, Duration::from_secs(3));
        assert!(matches!(err, SdkError::TimeoutError(_)));
        assert!(is_transient(&err));
        assert_eq!(error_code(&err), "TimeoutError");
        assert!(error_message(&err).contains("no answer before the invocation deadline"));
    }

    #[tokio::test(start_paused = true)]
    async fn sdk_call_retried_until_one_deadline_with_attempts_cut_at_the_other() {
        // Two 500s, then an answer: three attempts, the answer kept.
        let calls = std::cell::Cell::new(0u32);
        let soon = Deadline::after(Duration::from_secs(5));
        let answer = retry_sdk_call(&Backoff::none(), &soon, &soon, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(service_error(500, None))
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!((answer, calls.get()), (3, 3));

        // A hung attempt started before `retry_until` (1 s) runs on to `cut_at` (2 s);
        // no attempt starts after `retry_until`.
        let calls = std::cell::Cell::new(0u32);
        let retry_until = Deadline::after(Duration::from_secs(1));
        let cut_at = Deadline::after(Duration::from_secs(2));
        let started = Instant::now();
        let err = retry_sdk_call(&Backoff::none(), &retry_until, &cut_at, || {
            calls.set(calls.get() + 1);
            std::future::pending::<Result<u32, KinesisSdkError>>()
        })
        .await
        .unwrap_err();
        assert_eq!(error_code(&err), "TimeoutError");
        assert_eq!(calls.get(), 1);
        assert_eq!(Instant::now() - started, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_answered_in_time_keeps_its_result() {
        let deadline = Deadline::after(Duration::from_secs(3));
        let answered = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok::<u32, KinesisSdkError>(7)
        };
        assert_eq!(deadline.bound(answered).await.unwrap(), 7);
        let failed = async { Err::<u32, _>(service_error(400, Some("ValidationException"))) };
        assert_eq!(
            error_code(&deadline.bound(failed).await.unwrap_err()),
            "ValidationException"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_at_first_success() {
        let calls = RefCell::new(0);
        let result: Result<u32, KinesisSdkError> = retry_transient(
            &Backoff::default(),
            &Deadline::after(Duration::from_secs(30)),
            || {
                *calls.borrow_mut() += 1;
                let n = *calls.borrow();
                async move {
                    if n < 3 {
                        Err(service_error(400, Some("ThrottlingException")))
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(*calls.borrow(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_gives_up_at_once_on_permanent_error() {
        let calls = RefCell::new(0);
        let start = Instant::now();
        let result: Result<(), KinesisSdkError> = retry_transient(
            &Backoff::default(),
            &Deadline::after(Duration::from_secs(30)),
            || {
                *calls.borrow_mut() += 1;
                async { Err(service_error(400, Some("ResourceNotFoundException"))) }
            },
        )
        .await;
        assert_eq!(
            error_code(&result.unwrap_err()),
            "ResourceNotFoundException"
        );
        assert_eq!(*calls.borrow(), 1);
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_never_sleeps_past_the_deadline() {
        let deadline = Deadline::after(Duration::from_secs(3));
        let attempts = RefCell::new(Vec::new());
        let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10), 2.0);
        let result: Result<(), KinesisSdkError> = retry_transient(&backoff, &deadline, || {
            attempts.borrow_mut().push(Instant::now());
            async { Err(service_error(503, None)) }
        })
        .await;
        assert!(result.is_err());
        let attempts = attempts.into_inner();
        assert!(
            attempts.len() >= 2,
            "retried at least once: {}",
            attempts.len()
        );
        assert!(attempts.iter().all(|at| *at < deadline.instant()));
        assert!(Instant::now() < deadline.instant());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_makes_one_attempt_and_no_sleep_once_the_deadline_is_past() {
        let deadline = Deadline::after(Duration::ZERO);
        let start = Instant::now();
        let calls = RefCell::new(0);
        let result = retry_transient_if(
            &Backoff::none(),
            &deadline,
            |_: &()| true,
            || {
                *calls.borrow_mut() += 1;
                async { Err::<(), ()>(()) }
            },
        )
        .await;
        assert!(result.is_err());
        assert_eq!(*calls.borrow(), 1);
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn sdk_error_from_real_response_is_classified_by_its_code() {
        // The JSON error body as Kinesis sends it, parsed by the real deserializer.
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        let rule = mock!(aws_sdk_kinesis::Client::put_records).then_http_response(|| {
            json_error(
                400,
                "ProvisionedThroughputExceededException",
                "Rate exceeded for shard",
            )
        });
        let client = mock_client!(aws_sdk_kinesis, RuleMode::Sequential, [&rule], |c| c
            .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled()));
        let err = client
            .put_records()
            .stream_name("s")
            .records(
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key("k")
                    .data(aws_smithy_types::Blob::new("x"))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "ProvisionedThroughputExceededException");
        assert!(err.is_transient());
        assert_eq!(error_message(&err), "Rate exceeded for shard");
    }
}
