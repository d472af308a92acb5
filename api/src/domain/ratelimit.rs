//! Standalone rate limits (`ratelimit.*`): namespaces, overrides and the rules their inputs pass.

use super::Invalid;
use super::keys::{MAX_CREDITS, MAX_WINDOW_MS};

/// Longest namespace name or identifier, in characters.
pub const MAX_IDENTIFIER_LEN: usize = 255;
/// Most limits one `ratelimit.multiLimit` call may check.
pub const MAX_MULTI: usize = 100;
/// Most overrides one `ratelimit.listOverrides` page holds.
pub const MAX_PAGE: i64 = 100;

/// A per-identifier limit of a namespace. `identifier` may hold `*`, matching any run of
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// `rlor_…`.
    pub id: String,
    /// The identifier or pattern.
    pub identifier: String,
    /// Units per window.
    pub limit: i64,
    /// Window, ms.
    pub duration: i64,
}

/// Most overrides a namespace holds: all of them are read into each replica's cache.
pub const MAX_OVERRIDES: usize = 1000;
/// Most of those that are patterns: each is tried against every identifier checked.
pub const MAX_PATTERN_OVERRIDES: usize = 100;
/// Most `*` in one pattern.
pub const MAX_STARS: usize = 4;

/// A namespace with its overrides, as the cache keeps it, indexed for matching.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// `rlns_…`.
    pub id: String,
    /// Its workspace.
    pub workspace_id: String,
    /// Unique in the workspace.
    pub name: String,
    /// Every override, ordered by id.
    pub overrides: Vec<Override>,
    /// Exact overrides by identifier.
    exact: std::collections::HashMap<String, usize>,
    /// Pattern overrides, the most specific first (most literal characters, then oldest id).
    patterns: Vec<usize>,
}

impl Namespace {
    /// A namespace with `overrides`, indexed.
    pub fn new(id: String, workspace_id: String, name: String, overrides: Vec<Override>) -> Self {
        let exact = overrides
            .iter()
            .enumerate()
            .filter(|(_, o)| !o.identifier.contains('*'))
            .map(|(i, o)| (o.identifier.clone(), i))
            .collect();
        let literal = |o: &Override| o.identifier.chars().filter(|c| *c != '*').count();
        let mut patterns: Vec<usize> =
            (0..overrides.len()).filter(|i| overrides[*i].identifier.contains('*')).collect();
        patterns.sort_by(|a, b| {
            let (a, b) = (&overrides[*a], &overrides[*b]);
            literal(b).cmp(&literal(a)).then_with(|| a.id.cmp(&b.id))
        });
        Self { id, workspace_id, name, overrides, exact, patterns }
    }

    /// The override for `identifier`: an exact one first, else the wildcard pattern with the
    /// most literal characters (the most specific), the oldest id breaking ties.
    pub fn override_for(&self, identifier: &str) -> Option<&Override> {
        if let Some(i) = self.exact.get(identifier) {
            return self.overrides.get(*i);
        }
        self.patterns.iter().map(|i| &self.overrides[*i]).find(|o| glob(&o.identifier, identifier))
    }

    /// The override set for exactly `identifier` (a pattern is named by itself).
    pub fn override_named(&self, identifier: &str) -> Option<&Override> {
        self.overrides.iter().find(|o| o.identifier == identifier)
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (none included).
/// The pieces between stars must appear in order: the first at the start, the last at the end,
/// each middle one at its leftmost place after the previous (leftmost is always safe when `*` is
/// the only wildcard). Linear in the lengths, for patterns of a few stars.
pub fn glob(pattern: &str, text: &str) -> bool {
    let pieces: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = pieces.as_slice() else {
        return pattern == text;
    };
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Checks an override's identifier or pattern: 1-255 characters, at most [`MAX_STARS`] stars.
pub fn check_pattern(identifier: &str) -> Result<(), Invalid> {
    check_name("", "identifier", identifier)?;
    if identifier.matches('*').count() > MAX_STARS {
        return Err(Invalid::new(
            "INVALID_RATELIMIT",
            "identifier",
            format!("an override pattern holds at most {MAX_STARS} '*'"),
        ));
    }
    Ok(())
}

/// One `ratelimit.limit` check, as asked.
#[derive(Debug, Clone)]
pub struct LimitRequest {
    /// Namespace id or name.
    pub namespace: String,
    /// Who is limited.
    pub identifier: String,
    /// Units per window (an override replaces it).
    pub limit: i64,
    /// Window, ms (an override replaces it).
    pub duration: i64,
    /// Units this call takes.
    pub cost: i64,
}

/// The answer to one check.
#[derive(Debug, Clone)]
pub struct LimitAnswer {
    /// The request's namespace, as given.
    pub namespace: String,
    /// The identifier.
    pub identifier: String,
    /// The limit applied.
    pub limit: i64,
    /// Units left in the window.
    pub remaining: i64,
    /// When the window ends, Unix ms.
    pub reset: i64,
    /// Within the limit.
    pub success: bool,
    /// The override applied, if any.
    pub override_id: Option<String>,
}

/// Checks a namespace name or id, or an identifier: 1-255 characters. `at` prefixes the field
/// in the error (`[3].` in a multiLimit); nothing is allocated unless it fails.
pub fn check_name(at: &str, field: &str, text: &str) -> Result<(), Invalid> {
    if text.is_empty()
        || text.len() > 4 * MAX_IDENTIFIER_LEN
        || text.chars().count() > MAX_IDENTIFIER_LEN
    {
        return Err(Invalid::new(
            "INVALID_RATELIMIT",
            format!("{at}{field}"),
            format!("{field} must be 1-{MAX_IDENTIFIER_LEN} characters"),
        ));
    }
    Ok(())
}

/// Checks a limit and window: limit 0 to 10^15, window 1 s to 30 days in ms.
pub fn check_window(at: &str, limit: i64, duration: i64) -> Result<(), Invalid> {
    if !(0..=MAX_CREDITS).contains(&limit) {
        return Err(Invalid::new(
            "INVALID_RATELIMIT",
            format!("{at}limit"),
            "limit must be 0 to 10^15",
        ));
    }
    if !(1_000..=MAX_WINDOW_MS).contains(&duration) {
        return Err(Invalid::new(
            "INVALID_RATELIMIT",
            format!("{at}duration"),
            "duration must be 1000 ms to 30 days",
        ));
    }
    Ok(())
}

/// Checks one `ratelimit.limit` request; `at` prefixes field names (`[3].` in a multiLimit).
pub fn check_request(at: &str, r: &LimitRequest) -> Result<(), Invalid> {
    check_name(at, "namespace", &r.namespace)?;
    check_name(at, "identifier", &r.identifier)?;
    check_window(at, r.limit, r.duration)?;
    if !(0..=MAX_CREDITS).contains(&r.cost) {
        return Err(Invalid::new("INVALID_COST", format!("{at}cost"), "cost must be 0 to 10^15"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_match_any_run_of_characters() {
        assert!(glob("*", ""));
        assert!(glob("user_*", "user_42"));
        assert!(glob("*@example.com", "a@example.com"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(!glob("user_*", "admin_1"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exact2"));
        assert!(glob("a*a", "aa"), "the first and last pieces may not overlap, but may touch");
        assert!(!glob("ab*ba", "aba"), "nor overlap");
        assert!(glob("*ab*ab*", "xabyab"));
        assert!(!glob("*ab*ab*", "xaby"));
        assert!(glob("**", "anything"));
        // A pattern built to make a backtracking matcher explode answers at once.
        let long = "a".repeat(254);
        assert!(!glob(&"*a".repeat(100), &format!("{long}b")));
        assert!(glob(&"*a".repeat(100), &long));
    }

    #[test]
    fn the_exact_override_wins_then_the_most_specific_pattern() {
        let o = |id: &str, identifier: &str| Override {
            id: id.into(),
            identifier: identifier.into(),
            limit: 1,
            duration: 1000,
        };
        let ns = Namespace::new(
            "rlns_1".into(),
            "ws".into(),
            "n".into(),
            vec![o("1", "*"), o("2", "user_*"), o("3", "user_42"), o("4", "*_42")],
        );
        assert_eq!(ns.override_for("user_42").unwrap().id, "3");
        assert_eq!(ns.override_for("user_7").unwrap().id, "2");
        assert_eq!(ns.override_for("x").unwrap().id, "1");
        // "user_*" and "*_42" both match with five literal characters: the older id wins.
        assert_eq!(ns.override_for("user_x_42").unwrap().id, "2");
    }
}
