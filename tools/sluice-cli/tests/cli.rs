//! The `sluice` binary itself: help, usage errors and an unreachable endpoint, with the exit
//! codes a script relies on (no AWS: the endpoint is a closed local port).

use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/sluice-cli-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/sluice-cli-credentials",
        )
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_names_every_verb_and_the_exit_codes() {
    let out = sluice(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for verb in ["status", "redrive", "backfill", "replay"] {
        assert!(help.contains(verb), "{help}");
    }
    assert!(help.contains("Exit codes: 0 done"), "{help}");
}

#[test]
fn usage_errors_exit_2_before_any_aws_call() {
    for args in [
        &["redrive", "avro-convertr"][..],
        &["backfill", "crash-router", "s3://raw/incoming/"],
        &["replay", "archive", "archive/2026/11/"],
        &[
            "replay",
            "archive",
            "s3://archive/2026/11/",
            "--rate",
            "fast",
        ],
        &[
            "backfill",
            "avro-converter",
            "s3://raw/",
            "--since",
            "yesterday",
        ],
    ] {
        let out = sluice(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn an_unreachable_endpoint_is_an_error_that_says_so() {
    let out = sluice(&[
        "--endpoint-url",
        "http://127.0.0.1:9",
        "--stack",
        "sluice",
        "status",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(
            "sluice: reading stack sluice: DispatchFailure: could not reach the endpoint"
        ),
        "{err}"
    );
}
