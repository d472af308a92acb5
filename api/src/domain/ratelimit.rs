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

/// A namespace with its overrides, as the cache keeps it.
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
}

impl Namespace {
    /// The override for `identifier`: an exact one first, else the wildcard pattern with the
    /// most literal characters (the most specific), the oldest id breaking ties.
    pub fn override_for(&self, identifier: &str) -> Option<&Override> {
        if let Some(exact) = self.overrides.iter().find(|o| o.identifier == identifier) {
            return Some(exact);
        }
        self.overrides
            .iter()
            .filter(|o| o.identifier.contains('*') && glob(&o.identifier, identifier))
            .max_by(|a, b| {
                let literal = |o: &Override| o.identifier.chars().filter(|c| *c != '*').count();
                literal(a).cmp(&literal(b)).then_with(|| b.id.cmp(&a.id))
            })
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (none included).
/// Linear in the product of the lengths at worst, without recursion.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
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
        // A pattern built to backtrack still answers (and quickly: the loop is polynomial).
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
        let ns = Namespace {
            id: "rlns_1".into(),
            workspace_id: "ws".into(),
            name: "n".into(),
            overrides: vec![o("1", "*"), o("2", "user_*"), o("3", "user_42"), o("4", "*_42")],
        };
        assert_eq!(ns.override_for("user_42").unwrap().id, "3");
        assert_eq!(ns.override_for("user_7").unwrap().id, "2");
        assert_eq!(ns.override_for("x").unwrap().id, "1");
        // "user_*" and "*_42" both match with five literal characters: the older id wins.
        assert_eq!(ns.override_for("user_x_42").unwrap().id, "2");
    }
}
