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
}
