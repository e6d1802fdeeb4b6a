//! An error with its sources on one line (`outbox: cannot open: Permission denied`), for log
//! fields and config problems. Our errors keep their cause as `source()` and leave it out of
//! their own `Display`, so a plain `%err` would drop the cause and printing both would repeat it.

use std::error::Error;
use std::fmt;

/// Shows an error and each source after it, separated by `": "` (what anyhow's `{:#}` prints).
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_part_appears_once_in_order() {
        let err = Outer(std::io::Error::other("inner"));
        assert_eq!(Chain(&err).to_string(), "outer: inner");
    }
}
