//! Where an accepted crash id goes: the processing queue always, and extra queues
//! for a percentage of crash ids (Pigeon's `15:submitter`).
//!
//! Sampling is deterministic: a route with percentage `p` takes exactly the crash
//! ids whose [`CrashId::sample_bucket`] is below `p`. So a redelivered event goes
//! to the same queues, and the samples nest: a 5% route's ids are a subset of a
//! 15% route's ids.

use std::fmt;

use crate::crash::CrashId;

/// One destination queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub queue_url: String,
    /// The last path segment of the URL; names the queue in logs and metrics.
    pub queue_name: String,
    /// Share of accepted crash ids sent here, 0–100.
    pub percent: u8,
}

impl Route {
    pub fn new(queue_url: &str, percent: u8) -> Result<Route, RouteError> {
        let url = queue_url.trim();
        let invalid = |why| RouteError::InvalidQueueUrl {
            url: url.to_owned(),
            why,
        };
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| invalid("must start with https:// or http://"))?;
        let queue_name = rest
            .rsplit_once('/')
            .map(|(_, name)| name)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| invalid("must end in /<queue name>"))?;
        if percent > 100 {
            return Err(RouteError::Percent {
                entry: format!("{percent}:{url}"),
            });
        }
        Ok(Route {
            queue_url: url.to_owned(),
            queue_name: queue_name.to_owned(),
            percent,
        })
    }

    /// Whether this route takes `id`.
    pub fn takes(&self, id: &CrashId) -> bool {
        id.sample_bucket() < self.percent
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.percent, self.queue_url)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("queue URL {url:?} {why}")]
    InvalidQueueUrl { url: String, why: &'static str },
    #[error("route {entry:?} is not <percent>:<queue url> with a whole percent from 0 to 100")]
    Percent { entry: String },
    #[error("queue URL {url:?} appears in more than one route")]
    Duplicate { url: String },
}

/// All destinations: the processing queue first (100%), then the extra routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// The processing queue plus extra routes written `<percent>:<queue url>,…`
    /// (empty for none).
    pub fn parse(processing_queue_url: &str, extra: &str) -> Result<Routes, RouteError> {
        Routes::new(Route::new(processing_queue_url, 100)?, extra)
    }

    /// `processing` plus extra routes written `<percent>:<queue url>,…`.
    pub fn new(processing: Route, extra: &str) -> Result<Routes, RouteError> {
        let mut routes = vec![processing];
        for entry in extra.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (percent, url) = entry.split_once(':').ok_or_else(|| RouteError::Percent {
                entry: entry.to_owned(),
            })?;
            let percent = percent
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| RouteError::Percent {
                    entry: entry.to_owned(),
                })?;
            let route = Route::new(url, percent)?;
            if routes.iter().any(|r| r.queue_url == route.queue_url) {
                return Err(RouteError::Duplicate {
                    url: route.queue_url,
                });
            }
            routes.push(route);
        }
        Ok(Routes { routes })
    }

    pub fn all(&self) -> &[Route] {
        &self.routes
    }

    /// Indexes (into [`Routes::all`]) of the routes that take `id`.
    pub fn destinations<'a>(&'a self, id: &'a CrashId) -> impl Iterator<Item = usize> + 'a {
        self.routes
            .iter()
            .enumerate()
            .filter(move |(_, route)| route.takes(id))
            .map(|(index, _)| index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: &str = "http://localhost:4566/000000000000/crash-standard";
    const SUBMITTER: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/crash-submitter";

    fn id_in_bucket(wanted: impl Fn(u8) -> bool) -> CrashId {
        (0u32..)
            .map(|n| CrashId::parse(&format!("{n:08x}-2d1c-4865-af09-80bc00180313")).unwrap())
            .find(|id| wanted(id.sample_bucket()))
            .unwrap()
    }

    #[test]
    fn processing_queue_alone_takes_every_id() {
        let routes = Routes::parse(STANDARD, "").unwrap();
        assert_eq!(routes.all().len(), 1);
        assert_eq!(routes.all()[0].queue_name, "crash-standard");
        let id = id_in_bucket(|b| b == 99);
        assert_eq!(routes.destinations(&id).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn extra_route_takes_ids_below_its_percentage() {
        let routes = Routes::parse(STANDARD, &format!(" 15:{SUBMITTER} ")).unwrap();
        assert_eq!(routes.all()[1].percent, 15);
        assert_eq!(routes.all()[1].queue_name, "crash-submitter");
        let inside = id_in_bucket(|b| b == 14);
        let outside = id_in_bucket(|b| b == 15);
        assert_eq!(routes.destinations(&inside).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(routes.destinations(&outside).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn zero_percent_takes_nothing_and_samples_nest() {
        let routes = Routes::parse(
            STANDARD,
            "0:http://q/never,5:http://q/five,15:http://q/fifteen",
        )
        .unwrap();
        let four = id_in_bucket(|b| b == 4);
        let ten = id_in_bucket(|b| b == 10);
        assert_eq!(routes.destinations(&four).collect::<Vec<_>>(), [0, 2, 3]);
        assert_eq!(routes.destinations(&ten).collect::<Vec<_>>(), [0, 3]);
        assert!(
            routes
                .destinations(&id_in_bucket(|b| b == 0))
                .all(|i| i != 1)
        );
    }

    #[test]
    fn malformed_routes_are_rejected_naming_the_entry() {
        for extra in [
            "submitter",
            "101:http://q/a",
            "-1:http://q/a",
            "x:http://q/a",
            "15.5:http://q/a",
        ] {
            let err = Routes::parse(STANDARD, extra).unwrap_err();
            assert!(matches!(err, RouteError::Percent { .. }), "{extra}: {err}");
        }
        let err = Routes::parse(STANDARD, "15:sqs/queue").unwrap_err();
        assert!(matches!(err, RouteError::InvalidQueueUrl { .. }), "{err}");
        let err = Routes::parse(STANDARD, "15:http://q/").unwrap_err();
        assert!(matches!(err, RouteError::InvalidQueueUrl { .. }), "{err}");
        assert!(Routes::parse("crash-standard", "").is_err());
    }

    #[test]
    fn a_queue_in_two_routes_is_rejected() {
        let err = Routes::parse(STANDARD, &format!("15:{STANDARD}")).unwrap_err();
        assert_eq!(
            err,
            RouteError::Duplicate {
                url: STANDARD.to_owned()
            }
        );
    }
}
