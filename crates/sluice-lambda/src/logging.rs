//! Structured JSON logs on stdout, one object per line.
//!
//! Level: `RUST_LOG` when set (`level` and `target=level` directives, comma-separated, as
//! `tracing_subscriber::filter::Targets` reads them), else Lambda's `AWS_LAMBDA_LOG_LEVEL`
//! (advanced logging controls), else `info`. An unreadable `RUST_LOG` means `info`.
//!
//! `Targets`, not `EnvFilter`: the latter's span and field filters pull a regex engine
//! (~0.5 MB in every bootstrap) that a function's logs never need.

use std::sync::Once;

use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static INIT: Once = Once::new();

/// Installs the JSON subscriber once per process; later calls do nothing.
pub fn init() {
    INIT.call_once(|| {
        let filter = filter(&level_directive(
            std::env::var("RUST_LOG").ok().as_deref(),
            std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        ));
        let format = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .with_ansi(false);
        let _ = tracing_subscriber::registry()
            .with(format.with_filter(filter))
            .try_init();
    });
}

/// The filter a directive describes: comma-separated `level` or `target=level` parts
/// (`target` a module path); `info` when any part is not one of those.
pub fn filter(directive: &str) -> Targets {
    let readable = directive
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .all(|part| match part.split_once('=') {
            Some((target, level)) => {
                !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-')
                    && level.trim().parse::<LevelFilter>().is_ok()
            }
            None => part.parse::<LevelFilter>().is_ok(),
        });
    readable
        .then(|| directive.parse().ok())
        .flatten()
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
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
    use super::{filter, level_directive};
    use tracing::Level;

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

    #[test]
    fn directives_set_levels_per_target() {
        let f = filter("warn,kinesis_archiver=debug");
        assert!(f.would_enable("kinesis_archiver::handler", &Level::DEBUG));
        assert!(!f.would_enable("hyper::client", &Level::INFO));
        assert!(f.would_enable("hyper::client", &Level::WARN));
        // Unreadable: info.
        for unreadable in ["[{not a directive", "loud", "x=y", "=debug"] {
            let f = filter(unreadable);
            assert!(f.would_enable("anything", &Level::INFO), "{unreadable}");
            assert!(!f.would_enable("anything", &Level::DEBUG), "{unreadable}");
        }
        assert!(filter("debug").would_enable("a::b", &Level::DEBUG));
    }
}
