//! JSON-path-like locations (`$.device.os_version`, `$.tags[3]`) built on the stack while
//! walking a value, rendered to a string only when an error is reported.

use std::fmt;

/// A location inside a value. Each level borrows its parent, so descending costs nothing and
/// allocates nothing; only [`fmt::Display`] (on the error path) walks the chain.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    Root,
    /// A record field or map key.
    Key(&'a Path<'a>, &'a str),
    /// An array item.
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("$"),
            Path::Key(parent, key) => {
                parent.fmt(f)?;
                if is_plain_key(key) {
                    write!(f, ".{key}")
                } else {
                    write!(f, "[{key:?}]")
                }
            }
            Path::Index(parent, index) => {
                parent.fmt(f)?;
                write!(f, "[{index}]")
            }
        }
    }
}

fn is_plain_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields_indices_and_quoted_keys() {
        let root = Path::Root;
        let device = Path::Key(&root, "device");
        let tags = Path::Key(&device, "tags");
        let third = Path::Index(&tags, 3);
        let odd = Path::Key(&third, "x-y z");
        assert_eq!(root.to_string(), "$");
        assert_eq!(third.to_string(), "$.device.tags[3]");
        assert_eq!(odd.to_string(), "$.device.tags[3][\"x-y z\"]");
    }
}
