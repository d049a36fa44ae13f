//! Naming a delegation and counting within it: the delegation id, a record's
//! sequence number, and a retry's attempt number.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A record's position in its delegation's history: 1 for `queued`, then one more
/// for each record after it.
pub type Seq = u64;

/// The longest delegation id the log accepts, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Which attempt at a task a delegation is: 1 for the first, then one more for
/// each retry (a `queued` with `retry_of`). A delegation without `attempt` is
/// attempt 1.
pub type Attempt = u64;

/// The id of one delegation: 1 to [`MAX_ID_LEN`] bytes of UTF-8.
///
/// ```
/// use delegation_log::DelegationId;
///
/// let id: DelegationId = "task-42".parse()?;
/// assert_eq!(id.as_str(), "task-42");
/// assert!("".parse::<DelegationId>().is_err());
/// # Ok::<(), delegation_log::event::InvalidId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DelegationId(String);

/// Why a string is not a [`DelegationId`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a delegation id must be 1 to {MAX_ID_LEN} bytes, not {len}")]
pub struct InvalidId {
    /// The length, in bytes, of the refused id.
    pub len: usize,
}

impl DelegationId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DelegationId {
    type Error = InvalidId;

    fn try_from(id: String) -> Result<Self, InvalidId> {
        check(&id)?;
        Ok(Self(id))
    }
}

/// Whether `id` may be a [`DelegationId`], without taking it.
pub(crate) fn check(id: &str) -> Result<(), InvalidId> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(InvalidId { len: id.len() });
    }
    Ok(())
}

impl TryFrom<&str> for DelegationId {
    type Error = InvalidId;

    fn try_from(id: &str) -> Result<Self, InvalidId> {
        Self::try_from(id.to_owned())
    }
}

impl FromStr for DelegationId {
    type Err = InvalidId;

    fn from_str(id: &str) -> Result<Self, InvalidId> {
        Self::try_from(id)
    }
}

impl From<DelegationId> for String {
    fn from(id: DelegationId) -> String {
        id.0
    }
}

impl AsRef<str> for DelegationId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DelegationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_outside_one_to_256_bytes_are_refused() {
        assert!(DelegationId::try_from("").is_err());
        assert!(DelegationId::try_from("a".repeat(256)).is_ok());
        assert_eq!(
            DelegationId::try_from("a".repeat(257)),
            Err(InvalidId { len: 257 })
        );
    }
}
