//! `s3://bucket/prefix` arguments.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Uri {
    pub bucket: String,
    /// Possibly empty.
    pub prefix: String,
}

impl FromStr for S3Uri {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{s:?} is not an s3://bucket/prefix URI"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{s:?} names no bucket"));
        }
        Ok(S3Uri {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl fmt::Display for S3Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_and_prefix_are_split_at_the_first_slash() {
        assert_eq!(
            "s3://archive/2026/11/".parse::<S3Uri>().unwrap(),
            S3Uri {
                bucket: "archive".into(),
                prefix: "2026/11/".into()
            }
        );
        assert_eq!("s3://raw".parse::<S3Uri>().unwrap().prefix, "");
        assert!("raw/incoming".parse::<S3Uri>().is_err());
        assert!("s3:///x".parse::<S3Uri>().is_err());
    }
}
