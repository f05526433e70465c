//! job-poller configuration, read and validated once at cold start.

use std::time::Duration;

use sluice_lambda::config::{ConfigError, Env};

/// Everything the poller is told by its environment. Defaults beside each field.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `JOBS_TABLE` (required): DynamoDB table, partition key `source_id` (S).
    pub jobs_table: String,
    /// `NOTIFY_TOPIC_ARN` (required): SNS topic for the one outcome notification per job.
    pub topic_arn: String,
    /// `JOB_API_BASE_URL` (required): `https://…`; plain `http://` only to a loopback host.
    pub api_base_url: String,
    /// `JOB_API_TOKEN_SECRET` (required): Secrets Manager secret id or ARN of the bearer token.
    pub token_secret: String,
    /// `REPORTS_BUCKET` (required): the reports bucket; an S3 notification naming
    /// any other bucket is refused.
    pub reports_bucket: String,
    /// `REPORT_PREFIX` (default: empty, every key): only objects under it start jobs.
    pub report_prefix: String,
    /// `SAFETY_MARGIN_MS` (default 10000): time kept back from polling for handing
    /// over to the next generation or recording the outcome.
    pub safety_margin: Duration,
    /// `TURN_LEASE_GRACE_MS` (default 60000, 0–3600000): a turn is leased until its
    /// invocation's deadline plus this; past it, another invocation may take it over.
    pub lease_grace: Duration,
    /// `POLL_INITIAL_MS` (default 2000) and `POLL_MAX_MS` (default 30000): the status
    /// poll interval starts at initial and doubles up to max.
    pub poll_initial: Duration,
    pub poll_max: Duration,
    /// `MAX_GENERATIONS` (default 24, 1–1000): invocations one job may use in all.
    pub max_generations: u32,
    /// `JOB_API_TIMEOUT_MS` (default 5000): one HTTP request to the job API.
    pub api_timeout: Duration,
    /// `JOB_API_MAX_ANSWER_BYTES` (default 1 MiB, 1 KiB–16 MiB): the longest answer read.
    pub api_max_answer_bytes: usize,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let api_base_url = env.required("JOB_API_BASE_URL")?;
        validate_base_url(&api_base_url)
            .map_err(|why| ConfigError::invalid("JOB_API_BASE_URL", &api_base_url, why))?;
        let safety_margin = env.number_in("SAFETY_MARGIN_MS", 10_000u64, 200..=600_000)?;
        let poll_initial = env.number_in("POLL_INITIAL_MS", 2_000u64, 10..=600_000)?;
        let poll_max = env.number_in("POLL_MAX_MS", 30_000u64, 10..=600_000)?;
        if poll_max < poll_initial {
            return Err(ConfigError::invalid(
                "POLL_MAX_MS",
                &poll_max.to_string(),
                format!("must not be below POLL_INITIAL_MS ({poll_initial})"),
            ));
        }
        Ok(Config {
            jobs_table: env.required("JOBS_TABLE")?,
            topic_arn: env.required("NOTIFY_TOPIC_ARN")?,
            api_base_url: api_base_url.trim_end_matches('/').to_owned(),
            token_secret: env.required("JOB_API_TOKEN_SECRET")?,
            reports_bucket: env.required("REPORTS_BUCKET")?,
            report_prefix: env.string_or("REPORT_PREFIX", ""),
            safety_margin: Duration::from_millis(safety_margin),
            lease_grace: Duration::from_millis(env.number_in(
                "TURN_LEASE_GRACE_MS",
                60_000u64,
                0..=3_600_000,
            )?),
            poll_initial: Duration::from_millis(poll_initial),
            poll_max: Duration::from_millis(poll_max),
            max_generations: env.number_in("MAX_GENERATIONS", 24u32, 1..=1000)?,
            api_timeout: Duration::from_millis(env.number_in(
                "JOB_API_TIMEOUT_MS",
                5_000u64,
                100..=60_000,
            )?),
            api_max_answer_bytes: env.number_in(
                "JOB_API_MAX_ANSWER_BYTES",
                crate::job_api::DEFAULT_MAX_ANSWER_BYTES,
                1024..=16 << 20,
            )?,
        })
    }
}

/// `https://host[:port][/path]`, or `http://` to a loopback host only: the bearer
/// token must not cross a network in clear text.
fn validate_base_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = uri.host().ok_or("has no host")?;
    if uri.query().is_some() {
        return Err("must not have a query string".to_owned());
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err("plain http is only allowed to a loopback host; use https".to_owned()),
        _ => Err("scheme must be https".to_owned()),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("JOBS_TABLE", "jobs"),
            (
                "NOTIFY_TOPIC_ARN",
                "arn:aws:sns:us-east-1:000000000000:job-outcomes",
            ),
            ("JOB_API_BASE_URL", "https://bi.example.com/api/v2/"),
            ("JOB_API_TOKEN_SECRET", "sluice/job-poller/api-token"),
            ("REPORTS_BUCKET", "reports-bucket"),
        ]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut pairs = base();
        pairs.extend_from_slice(extra);
        Config::from_env(&Env::from_pairs(pairs))
    }

    #[test]
    fn defaults_apply_when_only_required_variables_are_set() {
        let c = with(&[]).unwrap();
        assert_eq!(c.api_base_url, "https://bi.example.com/api/v2");
        assert_eq!(c.report_prefix, "");
        assert_eq!(c.safety_margin, Duration::from_secs(10));
        assert_eq!(c.poll_initial, Duration::from_secs(2));
        assert_eq!(c.poll_max, Duration::from_secs(30));
        assert_eq!(c.max_generations, 24);
        assert_eq!(c.api_timeout, Duration::from_secs(5));
        assert_eq!(c.api_max_answer_bytes, 1 << 20);
        assert_eq!(c.lease_grace, Duration::from_secs(60));
    }

    #[test]
    fn every_required_variable_is_named_when_missing() {
        for name in [
            "JOBS_TABLE",
            "NOTIFY_TOPIC_ARN",
            "JOB_API_BASE_URL",
            "JOB_API_TOKEN_SECRET",
        ] {
            let pairs: Vec<_> = base().into_iter().filter(|(k, _)| *k != name).collect();
            let err = Config::from_env(&Env::from_pairs(pairs)).unwrap_err();
            assert_eq!(err.name, name);
        }
    }

    #[test]
    fn plain_http_is_only_allowed_to_loopback() {
        for ok in [
            "http://127.0.0.1:18080",
            "http://localhost:9000/api",
            "http://[::1]:80",
        ] {
            assert!(with(&[("JOB_API_BASE_URL", ok)]).is_ok(), "{ok}");
        }
        for bad in [
            "http://bi.example.com",
            "ftp://127.0.0.1",
            "bi.example.com",
            "https://x/?a=b",
        ] {
            let err = with(&[("JOB_API_BASE_URL", bad)]).unwrap_err();
            assert_eq!(err.name, "JOB_API_BASE_URL", "{bad}");
        }
    }

    #[test]
    fn poll_max_below_initial_is_rejected() {
        let err = with(&[("POLL_INITIAL_MS", "5000"), ("POLL_MAX_MS", "1000")]).unwrap_err();
        assert_eq!(err.name, "POLL_MAX_MS");
        assert!(err.to_string().contains("POLL_INITIAL_MS"), "{err}");
    }

    #[test]
    fn out_of_range_budget_is_rejected() {
        assert_eq!(
            with(&[("MAX_GENERATIONS", "0")]).unwrap_err().name,
            "MAX_GENERATIONS"
        );
        assert_eq!(
            with(&[("SAFETY_MARGIN_MS", "50")]).unwrap_err().name,
            "SAFETY_MARGIN_MS"
        );
    }
}
