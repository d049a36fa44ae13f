//! The store's own parameters in a URL's query, `schema=NAME` and
//! `connections=N`, taken out before the client parses the rest (it refuses
//! parameters it does not know).

use super::MAX_CONNECTIONS;

/// The values of the store's own parameters in a URL, as written; the last
/// wins where one is given twice.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Own {
    /// `schema=NAME`: the schema holding the tables.
    pub(super) schema: Option<String>,
    /// `connections=N`: how many connections the store keeps.
    pub(super) connections: Option<String>,
}

/// The tests' server (`DATABASE_URL`, from `bash .ci/postgres`) without the
/// store's own parameters, or `None` without one, as `tests/pg_support` does:
/// under `CI=true` a missing server fails the test.
#[cfg(test)]
pub(super) fn tests_server() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(split(&url).0),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "CI=true and DATABASE_URL is not set");
            eprintln!("SKIPPED: needs DATABASE_URL (`eval \"$(bash .ci/postgres)\"`)");
            None
        }
    }
}

/// `url` without the store's own parameters, and their values. The query
/// starts at the first `?` after the user info, which the client reads up to
/// the first `@` (so a password may hold a `?`). A `key=value` connection
/// string has no query and passes unchanged.
pub(super) fn split(url: &str) -> (String, Own) {
    let mut own = Own::default();
    let Some(at) = query_start(url) else {
        return (url.to_owned(), own);
    };
    let (base, query) = (&url[..at], &url[at + 1..]);
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            if let Some(value) = pair.strip_prefix("schema=") {
                own.schema = Some(value.to_owned());
            } else if let Some(value) = pair.strip_prefix("connections=") {
                own.connections = Some(value.to_owned());
            } else {
                return true;
            }
            false
        })
        .collect();
    if rest.is_empty() {
        (base.to_owned(), own)
    } else {
        (format!("{base}?{}", rest.join("&")), own)
    }
}

/// Where the query's `?` is in a `postgres://` or `postgresql://` URL, if it
/// has one.
fn query_start(url: &str) -> Option<usize> {
    let scheme = url.find("://")? + 3;
    let rest = url.get(scheme..)?;
    let from = rest.find('@').map_or(0, |at| at + 1);
    let question = rest.get(from..)?.find('?')?;
    Some(scheme + from + question)
}

/// `url` with every password the PostgreSQL client would read from it
/// replaced by `***`, and nothing else changed, so that it can be shown in a
/// log line or an error. In a `postgres://` or `postgresql://` URL: the
/// password of its user info, and the value of each `password` parameter of
/// its query. In a `key=value` connection string (anything else): the value
/// of each `password` keyword.
///
/// ```
/// use delegation_log::store::postgres::redact;
///
/// assert_eq!(
///     redact("postgres://app:s3cret@db:5432/agents?schema=x"),
///     "postgres://app:***@db:5432/agents?schema=x"
/// );
/// assert_eq!(
///     redact("postgres://app@db/agents?password=s3cret"),
///     "postgres://app@db/agents?password=***"
/// );
/// assert_eq!(
///     redact("host=db password='it''s s3cret' dbname=agents"),
///     "host=db password=*** dbname=agents"
/// );
/// ```
pub fn redact(url: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        hide_query_password(&hide_user_password(url))
    } else {
        hide_keyword_password(url)
    }
}

/// A `key=value` connection string with the value of each `password` keyword
/// replaced by `***`. Read as the client reads one: keywords and values
/// separated by whitespace, `=` with optional whitespace around it, and a
/// value either up to the next whitespace or quoted in `'` (a quote inside
/// doubled or escaped with `\`, and a backslash escaping any character).
fn hide_keyword_password(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let Some(at) = keyword_at(rest, "password") else {
            shown.push_str(rest);
            return shown;
        };
        let after = &rest[at + "password".len()..];
        let Some(value) = after.trim_start().strip_prefix('=') else {
            shown.push_str(&rest[..at + "password".len()]);
            rest = after;
            continue;
        };
        let value = value.trim_start();
        shown.push_str(&rest[..at]);
        shown.push_str("password=***");
        rest = &value[value_len(value)..];
    }
}

/// Where `keyword` starts a word of `text` (at its start or after
/// whitespace), the first time it does.
fn keyword_at(text: &str, keyword: &str) -> Option<usize> {
    text.match_indices(keyword).map(|(at, _)| at).find(|&at| {
        text[..at]
            .chars()
            .next_back()
            .is_none_or(char::is_whitespace)
    })
}

/// The length of the value that starts `text`: quoted, up to its closing
/// quote (or the end); otherwise up to the next whitespace.
fn value_len(text: &str) -> usize {
    let mut chars = text.char_indices();
    if text.starts_with('\'') {
        chars.next();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '\'' if text[at + 1..].starts_with('\'') => {
                    chars.next();
                }
                '\'' => return at + 1,
                _ => {}
            }
        }
        return text.len();
    }
    let mut escaped = false;
    for (at, c) in chars {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c.is_whitespace() => return at,
            _ => {}
        }
    }
    text.len()
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
    let Some(at) = query_start(url) else {
        return url.to_owned();
    };
    let (head, query) = (&url[..=at], &url[at + 1..]);
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
    format!("{head}{}", parameters.join("&"))
}

/// The number a `connections=N` parameter gives: a whole number from 1 to
/// [`MAX_CONNECTIONS`], or why not.
pub(super) fn connections(value: &str) -> Result<usize, String> {
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<usize>() {
        Ok(n) if digits && (1..=MAX_CONNECTIONS).contains(&n) => Ok(n),
        _ => Err(format!(
            "PostgreSQL URL parameter `connections={value}` refused: give a whole \
             number from 1 to {MAX_CONNECTIONS}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(schema: Option<&str>, connections: Option<&str>) -> Own {
        Own {
            schema: schema.map(str::to_owned),
            connections: connections.map(str::to_owned),
        }
    }

    #[test]
    fn the_store_s_parameters_are_taken_out_and_the_rest_kept() {
        assert_eq!(
            split("postgres://h/db"),
            ("postgres://h/db".into(), own(None, None))
        );
        assert_eq!(
            split("postgres://h/db?schema=s1"),
            ("postgres://h/db".into(), own(Some("s1"), None))
        );
        assert_eq!(
            split("postgres://h/db?sslmode=disable&schema=s1&connect_timeout=3&connections=8"),
            (
                "postgres://h/db?sslmode=disable&connect_timeout=3".into(),
                own(Some("s1"), Some("8"))
            )
        );
        assert_eq!(
            split("host=h dbname=db"),
            ("host=h dbname=db".into(), own(None, None))
        );
        assert_eq!(
            split("host=h password=a?schema=b"),
            ("host=h password=a?schema=b".into(), own(None, None))
        );
        // The client reads the user info up to the first `@`: a `?` before it
        // is the password's.
        assert_eq!(
            split("postgres://u:p?x@h/db?schema=s&connections=3"),
            ("postgres://u:p?x@h/db".into(), own(Some("s"), Some("3")))
        );
    }

    #[test]
    fn connections_are_a_whole_number_from_1_to_the_most() {
        assert_eq!(connections("1"), Ok(1));
        assert_eq!(connections("64"), Ok(MAX_CONNECTIONS));
        for bad in ["0", "65", "-1", "", "two", "2.5", " 2", "+2", "%33"] {
            let refused = connections(bad).unwrap_err();
            assert!(
                refused.contains(&format!("`connections={bad}`")),
                "{refused}"
            );
        }
    }

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
            // Connection strings of keywords and values.
            ("host=db password=s3cret", "host=db password=***"),
            (
                "password = 'a b\\' c' user=app mypassword=kept",
                "password=*** user=app mypassword=kept",
            ),
            ("host=db password=", "host=db password=***"),
            ("password='unterminated", "password=***"),
            ("host=db passwordless=kept", "host=db passwordless=kept"),
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
