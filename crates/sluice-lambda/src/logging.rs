//! Structured JSON logs on stdout, one object per line.
//!
//! Level: `RUST_LOG` when set (full `EnvFilter` syntax), else Lambda's
//! `AWS_LAMBDA_LOG_LEVEL` (advanced logging controls), else `info`.

use std::sync::Once;

use tracing_subscriber::EnvFilter;

static INIT: Once = Once::new();

/// Installs the JSON subscriber once per process; later calls do nothing.
pub fn init() {
    INIT.call_once(|| {
        let filter = EnvFilter::try_new(level_directive(
            std::env::var("RUST_LOG").ok().as_deref(),
            std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        ))
        .unwrap_or_else(|_| EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .with_ansi(false)
            .with_env_filter(filter)
            .try_init();
    });
}

/// The filter directive for the given `RUST_LOG` and `AWS_LAMBDA_LOG_LEVEL`.
pub fn level_directive(rust_log: Option<&str>, lambda_level: Option<&str>) -> String {
    if let Some(v) = rust_log.filter(|v| !v.trim().is_empty()) {
        return v.to_string();
    }
    match lambda_level
        .map(|l| l.trim().to_ascii_uppercase())
        .as_deref()
    {
        Some("TRACE") => "trace",
        Some("DEBUG") => "debug",
        Some("WARN") => "warn",
        Some("ERROR") | Some("FATAL") => "error",
        _ => "info",
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::level_directive;

    #[test]
    fn rust_log_wins_over_lambda_level() {
        assert_eq!(
            level_directive(Some("debug,hyper=warn"), Some("ERROR")),
            "debug,hyper=warn"
        );
    }

    #[test]
    fn lambda_levels_map_to_tracing_levels() {
        assert_eq!(level_directive(None, Some("FATAL")), "error");
        assert_eq!(level_directive(None, Some("warn")), "warn");
        assert_eq!(level_directive(Some(" "), Some("DEBUG")), "debug");
        assert_eq!(level_directive(None, None), "info");
    }
}
