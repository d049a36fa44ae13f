//! Where a command's log is: a sled directory, or a PostgreSQL server given as a
//! `postgres://` (or `postgresql://`) URL in the same argument.

use std::fmt;
use std::path::Path;

use delegation_log::{Ledger, Result};

/// The URL, when `db` names a PostgreSQL server rather than a directory.
pub(crate) fn url(db: &Path) -> Option<&str> {
    let text = db.to_str()?;
    (text.starts_with("postgres://") || text.starts_with("postgresql://")).then_some(text)
}

/// Opens the log at `db`, creating it if it is a directory that holds none (on
/// PostgreSQL, the schema is created if missing).
pub(crate) fn open(db: &Path) -> Result<Ledger> {
    match url(db) {
        Some(url) => Ledger::open_url(url),
        None => Ledger::open(db),
    }
}

/// Opens the log at `db`, which must exist if it is a directory (on PostgreSQL,
/// a server that answers; a schema not there yet reads as an empty log).
pub(crate) fn open_existing(db: &Path) -> Result<Ledger> {
    match url(db) {
        Some(url) => Ledger::open_url(url),
        None => Ledger::open_existing(db),
    }
}

/// `db` as messages show it: a directory as it is; a URL with any password the
/// client would read from it, in its user info or as a `password=` parameter,
/// replaced by `***` (`postgres://user:***@host/db`), so that no error or line
/// of output ever prints it.
pub(crate) fn shown(db: &Path) -> Shown<'_> {
    Shown(db)
}

/// What [`shown`] returns: displays `db` without its password.
pub(crate) struct Shown<'a>(&'a Path);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url(self.0) {
            Some(url) => f.write_str(&redact(url)),
            None => self.0.display().fmt(f),
        }
    }
}

/// `url` with every password the PostgreSQL client would read from it
/// replaced by `***`: the one in its user info ([`hide_user_password`]), and
/// the value of a `password` parameter in its query ([`hide_query_password`]).
pub(crate) fn redact(url: &str) -> String {
    hide_query_password(&hide_user_password(url))
}

/// `url` with the password of its user info, if any, replaced by `***`. The
/// user info is what comes before the last `@` of the authority (which ends at
/// the first `/`, `?` or `#` after `://`); its password is what follows its
/// first `:`. The PostgreSQL client reads the user info up to the first `@`
/// instead, wherever it is, so a password holding a `?`, `#` or `/` ends the
/// authority early; when the authority has no `@` but a `:`, whatever the
/// client would read as the password is replaced.
fn hide_user_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if let Some((user_info, host)) = authority.rsplit_once('@') {
        return match user_info.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        };
    }
    match (authority.split_once(':'), rest.split_once('@')) {
        (Some((user, _)), Some((_, after))) => format!("{scheme}://{user}:***@{after}"),
        _ => url.to_owned(),
    }
}

/// `url` with the value of each `password` parameter of its query replaced by
/// `***`. The query is read as the client reads it: it starts at the first `?`
/// after the user info (which ends at the first `@`, if there is one), its
/// parameters are split at `&` and each at its first `=`, and a key is
/// percent-decoded (`pass%77ord` is `password` too).
fn hide_query_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let from = rest.find('@').map_or(0, |at| at + 1);
    let Some(question) = rest.get(from..).and_then(|after| after.find('?')) else {
        return url.to_owned();
    };
    let (head, query) = rest.split_at(from + question + 1);
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((key, _))
                if percent_encoding::percent_decode_str(key).decode_utf8_lossy() == "password" =>
            {
                format!("{key}=***")
            }
            _ => parameter.to_owned(),
        })
        .collect();
    format!("{scheme}://{head}{}", parameters.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn a_password_is_replaced_and_nothing_else_changes() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db:5432/agents",
                "postgres://app:***@db:5432/agents",
            ),
            (
                "postgresql://app:p@ss@db/agents?schema=x",
                "postgresql://app:***@db/agents?schema=x",
            ),
            ("postgres://app:@db/agents", "postgres://app:***@db/agents"),
            ("postgres://app@db/agents", "postgres://app@db/agents"),
            (
                "postgres://db/agents?password=x@y",
                "postgres://db/agents?password=x@y",
            ),
            ("postgres://db/agents", "postgres://db/agents"),
            (
                "postgres://app:p?ss@db/agents?schema=x",
                "postgres://app:***@db/agents?schema=x",
            ),
            (
                "postgres://app:p#s/s@db/agents",
                "postgres://app:***@db/agents",
            ),
            // The client reads "db:5432/agents?password=x" as the user info
            // here (up to the first `@`): what it would take for a password
            // is hidden, and the rest shown as it would read it.
            (
                "postgres://db:5432/agents?password=x@y",
                "postgres://db:***@y",
            ),
            ("/var/lib/log", "/var/lib/log"),
            // A password given as a query parameter, which the client reads
            // as the password too.
            (
                "postgres://db/agents?password=hunter2",
                "postgres://db/agents?password=***",
            ),
            (
                "postgres://app@db/agents?schema=x&password=s&connections=2",
                "postgres://app@db/agents?schema=x&password=***&connections=2",
            ),
            (
                "postgres://app:pw@db/agents?pass%77ord=s=t&passwords=kept",
                "postgres://app:***@db/agents?pass%77ord=***&passwords=kept",
            ),
            (
                "postgres://app:p?password=q@db/agents?password=r",
                "postgres://app:***@db/agents?password=***",
            ),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }
}
