//! Permissions: a segment glob, the rule for granting, and verifyKey's permission queries.
//!
//! A permission splits on `.` into segments. A segment that is exactly `*` matches one segment,
//! `**` matches zero or more, and every other character is literal. A permission that is `*`
//! alone matches everything, like `**` (the seed's table says so).
//!
//! Granting is by language inclusion: a root key may grant `p` only if every string `p` could
//! match is matched by one of the root key's own permissions. That is decided exactly, by
//! running the patterns as automata over the finitely many literals they mention plus one
//! symbol standing for every other segment.

use std::collections::{BTreeSet, HashSet, VecDeque};

/// Longest permission string.
pub const MAX_PERMISSION_LEN: usize = 512;
/// Longest permission query.
pub const MAX_QUERY_LEN: usize = 1000;
/// Deepest nesting of parentheses in a query.
const MAX_QUERY_DEPTH: usize = 16;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Token {
    Literal(String),
    One,
    Any,
}

/// A parsed permission pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Permission {
    text: String,
    tokens: Vec<Token>,
}

/// Why a permission or query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    /// Empty, too long, an empty segment, or whitespace/control characters.
    #[error(
        "invalid permission {0:?}: segments are non-empty, split by '.', without spaces, at most 512 characters"
    )]
    Invalid(String),
    /// A query that does not parse.
    #[error("invalid permission query: {0}")]
    Query(String),
}

impl Permission {
    /// Parses a permission string.
    pub fn parse(text: &str) -> Result<Self, PermissionError> {
        let invalid = || PermissionError::Invalid(text.chars().take(64).collect());
        if text.is_empty()
            || text.len() > MAX_PERMISSION_LEN
            || text.chars().any(|c| c.is_whitespace() || c.is_control() || c == '(' || c == ')')
        {
            return Err(invalid());
        }
        if text == "*" {
            return Ok(Self { text: text.to_owned(), tokens: vec![Token::Any] });
        }
        let tokens = text
            .split('.')
            .map(|segment| match segment {
                "" => Err(invalid()),
                "*" => Ok(Token::One),
                "**" => Ok(Token::Any),
                literal => Ok(Token::Literal(literal.to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { text: text.to_owned(), tokens })
    }

    /// The permission as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this pattern matches the concrete permission `name`. Runs the pattern as an
    /// automaton, so the time is linear in both lengths whatever the wildcards.
    pub fn matches(&self, name: &str) -> bool {
        let mut states = closure(&self.tokens, &BTreeSet::from([0]));
        for segment in name.split('.') {
            let mut next = BTreeSet::new();
            for &s in &states {
                match self.tokens.get(s) {
                    Some(Token::Any) => {
                        next.insert(s);
                    }
                    Some(Token::One) => {
                        next.insert(s + 1);
                    }
                    Some(Token::Literal(l)) if l == segment => {
                        next.insert(s + 1);
                    }
                    _ => {}
                }
            }
            states = closure(&self.tokens, &next);
            if states.is_empty() {
                return false;
            }
        }
        states.contains(&self.tokens.len())
    }
}

/// Symbols of the finite alphabet used for inclusion: a literal index, or "any other segment".
type Symbol = Option<usize>;

/// Epsilon closure of NFA states of one pattern (state i = before token i).
fn closure(tokens: &[Token], states: &BTreeSet<usize>) -> BTreeSet<usize> {
    let mut out = states.clone();
    let mut stack: Vec<usize> = states.iter().copied().collect();
    while let Some(s) = stack.pop() {
        if matches!(tokens.get(s), Some(Token::Any)) && out.insert(s + 1) {
            stack.push(s + 1);
        }
    }
    out
}

fn step(
    tokens: &[Token],
    literals: &[String],
    states: &BTreeSet<usize>,
    symbol: Symbol,
) -> BTreeSet<usize> {
    let mut next = BTreeSet::new();
    for &s in states {
        match tokens.get(s) {
            Some(Token::Any) => {
                next.insert(s);
            }
            Some(Token::One) => {
                next.insert(s + 1);
            }
            Some(Token::Literal(l)) if symbol.is_some_and(|i| &literals[i] == l) => {
                next.insert(s + 1);
            }
            Some(Token::Literal(_)) | None => {}
        }
    }
    closure(tokens, &next)
}

/// Whether every string `wanted` matches is matched by at least one of `held`.
pub fn covers(held: &[Permission], wanted: &Permission) -> bool {
    let mut literals: Vec<String> = held
        .iter()
        .chain(std::iter::once(wanted))
        .flat_map(|p| p.tokens.iter())
        .filter_map(|t| match t {
            Token::Literal(l) => Some(l.clone()),
            _ => None,
        })
        .collect();
    literals.sort();
    literals.dedup();
    let alphabet: Vec<Symbol> =
        (0..literals.len()).map(Some).chain(std::iter::once(None)).collect();

    let start = |tokens: &[Token]| closure(tokens, &BTreeSet::from([0]));
    type Node = (BTreeSet<usize>, Vec<BTreeSet<usize>>);
    let first: Node = (start(&wanted.tokens), held.iter().map(|h| start(&h.tokens)).collect());
    let mut seen: HashSet<Node> = HashSet::new();
    let mut queue: VecDeque<Node> = VecDeque::from([first]);
    while let Some((w, hs)) = queue.pop_front() {
        if !seen.insert((w.clone(), hs.clone())) {
            continue;
        }
        let wanted_accepts = w.contains(&wanted.tokens.len());
        let some_held_accepts = held.iter().zip(&hs).any(|(h, s)| s.contains(&h.tokens.len()));
        if wanted_accepts && !some_held_accepts {
            return false;
        }
        for &symbol in &alphabet {
            let nw = step(&wanted.tokens, &literals, &w, symbol);
            if nw.is_empty() {
                continue;
            }
            let nhs =
                held.iter().zip(&hs).map(|(h, s)| step(&h.tokens, &literals, s, symbol)).collect();
            queue.push_back((nw, nhs));
        }
    }
    true
}

/// A parsed verifyKey permission query: names combined with `AND`, `OR` and parentheses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A permission name that one of the key's permissions must match.
    Name(String),
    /// Both hold.
    And(Box<Query>, Box<Query>),
    /// Either holds.
    Or(Box<Query>, Box<Query>),
}

impl Query {
    /// Parses a query such as `documents.read AND (documents.write OR admin)`.
    pub fn parse(text: &str) -> Result<Self, PermissionError> {
        if text.len() > MAX_QUERY_LEN {
            return Err(PermissionError::Query(format!("longer than {MAX_QUERY_LEN} characters")));
        }
        let tokens = lex(text)?;
        let mut parser = Parser { tokens, pos: 0, depth: 0 };
        let query = parser.or()?;
        if parser.pos != parser.tokens.len() {
            return Err(PermissionError::Query("unexpected text after the end".into()));
        }
        Ok(query)
    }

    /// Whether a key holding `held` satisfies the query.
    pub fn holds(&self, held: &[Permission]) -> bool {
        match self {
            Self::Name(name) => held.iter().any(|p| p.matches(name)),
            Self::And(a, b) => a.holds(held) && b.holds(held),
            Self::Or(a, b) => a.holds(held) || b.holds(held),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Lexeme {
    Name(String),
    And,
    Or,
    Open,
    Close,
}

fn lex(text: &str) -> Result<Vec<Lexeme>, PermissionError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Lexeme::Open);
            }
            ')' => {
                chars.next();
                out.push(Lexeme::Close);
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(match word.as_str() {
                    "AND" | "and" => Lexeme::And,
                    "OR" | "or" => Lexeme::Or,
                    _ => {
                        Permission::parse(&word).map_err(|_| {
                            PermissionError::Query(format!(
                                "{:?} is not a permission name",
                                word.chars().take(64).collect::<String>()
                            ))
                        })?;
                        Lexeme::Name(word)
                    }
                });
            }
        }
    }
    if out.is_empty() {
        return Err(PermissionError::Query("empty".into()));
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Lexeme>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Lexeme> {
        self.tokens.get(self.pos)
    }

    fn or(&mut self) -> Result<Query, PermissionError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Lexeme::Or) {
            self.pos += 1;
            left = Query::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Query, PermissionError> {
        let mut left = self.atom()?;
        while self.peek() == Some(&Lexeme::And) {
            self.pos += 1;
            left = Query::And(Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<Query, PermissionError> {
        match self.tokens.get(self.pos).cloned() {
            Some(Lexeme::Name(name)) => {
                self.pos += 1;
                Ok(Query::Name(name))
            }
            Some(Lexeme::Open) => {
                self.depth += 1;
                if self.depth > MAX_QUERY_DEPTH {
                    return Err(PermissionError::Query("nested too deeply".into()));
                }
                self.pos += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Lexeme::Close) {
                    return Err(PermissionError::Query("missing ')'".into()));
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(inner)
            }
            Some(Lexeme::Close) => Err(PermissionError::Query("unexpected ')'".into())),
            Some(Lexeme::And | Lexeme::Or) => {
                Err(PermissionError::Query("AND/OR needs a permission on both sides".into()))
            }
            None => Err(PermissionError::Query("ends where a permission was expected".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Permission {
        Permission::parse(s).unwrap()
    }

    /// Seed 002's table of matches, with `.` as the separator.
    #[test]
    fn the_seed_table_of_glob_matches() {
        let table: [(&str, &[&str], &[&str]); 5] = [
            ("myapp.config", &["myapp.config"], &["myapp.config.sub", "myapp.other"]),
            ("myapp.*", &["myapp.foo", "myapp.bar"], &["myapp.foo.bar"]),
            ("myapp.**", &["myapp.a", "myapp.a.b.c"], &["other.a"]),
            ("**", &["a", "a.b", "x.y.z.w"], &[]),
            ("*", &["a", "a.b", "x.y.z.w"], &[]),
        ];
        for (pattern, yes, no) in table {
            for name in yes {
                assert!(p(pattern).matches(name), "{pattern} should match {name}");
            }
            for name in no {
                assert!(!p(pattern).matches(name), "{pattern} should not match {name}");
            }
        }
    }

    #[test]
    fn other_characters_are_literal() {
        assert!(!p("doc?").matches("docs"));
        assert!(p("a*b").matches("a*b"));
        assert!(!p("a*b").matches("axb"));
        assert!(p("api.*.read_key").matches("api.api_123.read_key"));
    }

    #[test]
    fn many_wildcards_match_in_linear_time() {
        let pattern = p(&vec!["**"; 150].join("."));
        let name = vec!["x"; 300].join(".");
        assert!(pattern.matches(&name));
        let strict = p(&format!("{}.y", vec!["**"; 150].join(".")));
        assert!(!strict.matches(&name));
    }

    #[test]
    fn invalid_permissions_are_refused() {
        for bad in ["", "a..b", ".a", "a.", "has space", "a(b)", &"x".repeat(513)] {
            assert!(Permission::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn granting_is_language_inclusion() {
        let held = [p("api.*.read_key"), p("api.api_1.**")];
        assert!(covers(&held, &p("api.api_9.read_key")));
        assert!(covers(&held, &p("api.*.read_key")));
        assert!(covers(&held, &p("api.api_1.create_key")));
        assert!(covers(&held, &p("api.api_1.*")));
        assert!(covers(&held, &p("api.api_1")), "** includes zero segments");
        assert!(!covers(&held, &p("api.*.create_key")));
        assert!(!covers(&held, &p("api.**")));
        assert!(!covers(&held, &p("**")));
        assert!(!covers(&[p("api.*")], &p("api.*.x")));
        assert!(covers(&[p("**")], &p("anything.at.all")));
        assert!(covers(&[p("*")], &p("**")), "'*' alone is everything");
        assert!(!covers(&[], &p("a")));
    }

    #[test]
    fn a_union_can_cover_what_no_single_permission_does() {
        // a.** = {a} ∪ {a.x…}; a alone covers the first, a.*.** the rest.
        let held = [p("a"), p("a.*.**")];
        assert!(covers(&held, &p("a.**")));
        assert!(!covers(&held[1..], &p("a.**")));
    }

    #[test]
    fn queries_combine_names_with_and_or_and_parentheses() {
        let held = [p("documents.*"), p("billing.read")];
        let q = |s: &str| Query::parse(s).unwrap().holds(&held);
        assert!(q("documents.read"));
        assert!(q("documents.read AND billing.read"));
        assert!(!q("documents.read AND billing.write"));
        assert!(q("billing.write OR documents.write"));
        assert!(q("(billing.write OR billing.read) AND documents.delete"));
        assert!(!q("admin AND (documents.read OR billing.read)"));
        assert!(q("admin or documents.x"), "keywords in lower case too");
    }

    #[test]
    fn bad_queries_are_refused_with_a_reason() {
        for bad in ["", "AND", "a AND", "(a", "a)", "a b", "a AND (b OR", "a..b", &"(".repeat(20)] {
            assert!(Query::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Query::parse(&"a OR ".repeat(300)).is_err(), "too long");
    }
}
