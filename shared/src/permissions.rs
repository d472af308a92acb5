//! Permissions: a segment glob, the rule for granting, the typed permissions a call needs, and
//! verifyKey's permission queries.
//!
//! A permission splits on `.` into segments. A segment that is exactly `*` matches one segment,
//! `**` matches zero or more, and every other character is literal. A permission that is `*`
//! alone matches everything, like `**` (the seed's table says so).
//!
//! Granting is by language inclusion: a root key may grant `p` only if every name `p` could
//! match is matched by one of the root key's own permissions. That is decided exactly, by
//! running the patterns as automata over the literals they mention plus one symbol standing for
//! every other segment. Deciding it can take exponentially many product states (`**.a.*.*.…`
//! must remember which of its last segments were `a`), and the patterns come from the caller,
//! so the search stops after [`COVERS_BUDGET`] units of work with [`TooComplex`], which refuses
//! the grant: nothing is granted that was not checked.
//!
//! A call's own authorization names what it needs as a [`Perm`], built from an [`Action`], and
//! asks [`allows`]; no permission name is formatted by hand.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;

/// Longest permission string.
pub const MAX_PERMISSION_LEN: usize = 512;
/// Longest permission query.
pub const MAX_QUERY_LEN: usize = 1000;
/// Deepest nesting of parentheses in a query.
const MAX_QUERY_DEPTH: usize = 16;

/// The most work one [`covers`] call may do, in NFA states handled.
///
/// A product state costs its size when expanded, and each segment tried from it costs one plus
/// the size of the state it leads to, so the count bounds time and memory alike: every state
/// kept was paid for, and the segments tried from a state are never more than its size. Real
/// grants stay far below it: `api.*.read_key` or twenty-segment patterns with a few wildcards,
/// against `api.*.read_key`, `api.api_1.**` and fifty `api.api_N.*`, cost a few thousand.
/// `**.a.*.*.…`, which needs a state for each subset of its `*`s, exhausts it after about 4,000
/// states: a millisecond or two optimised, a few tens unoptimised, and about a megabyte.
pub const COVERS_BUDGET: usize = 50_000;

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

/// [`covers`] gave up after [`COVERS_BUDGET`] without deciding; the grant must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the permission is too complex to check against the root key's own (state budget exceeded)"
)]
pub struct TooComplex;

impl Permission {
    /// Parses a permission string.
    pub fn parse(text: &str) -> Result<Self, PermissionError> {
        let invalid = || PermissionError::Invalid(text.chars().take(64).collect());
        if text.is_empty()
            || text.len() > MAX_PERMISSION_LEN
            || text.chars().any(|c| {
                // U+FEFF counts as white space in some regex dialects: the served schema's
                // pattern excludes it, so the parser does too.
                c.is_whitespace() || c.is_control() || matches!(c, '(' | ')' | '\u{feff}')
            })
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
    /// automaton: the time is at most the product of both lengths, whatever the wildcards. For
    /// inputs a caller controls, use [`Permission::matches_within`].
    pub fn matches(&self, name: &str) -> bool {
        self.matches_within(name, &mut Budget::new(usize::MAX)).unwrap_or(false)
    }

    /// [`Permission::matches`], spending from `budget` one unit per segment plus one per live
    /// automaton state.
    pub fn matches_within(&self, name: &str, budget: &mut Budget) -> Result<bool, TooComplex> {
        let is_any = |s: usize| matches!(self.tokens.get(s), Some(Token::Any));
        let mut states = closure(vec![0], is_any);
        for segment in name.split('.') {
            budget.spend(1 + states.len())?;
            let next = states
                .iter()
                .filter_map(|&s| match self.tokens.get(s) {
                    Some(Token::Any) => Some(s),
                    Some(Token::One) => Some(s + 1),
                    Some(Token::Literal(l)) if l == segment => Some(s + 1),
                    Some(Token::Literal(_)) | None => None,
                })
                .collect();
            states = closure(next, is_any);
            if states.is_empty() {
                return Ok(false);
            }
        }
        Ok(states.last() == Some(&self.tokens.len()))
    }
}

/// Adds to `states`, NFA states of one pattern (state i is "before token i"), every state that
/// `**` reaches without reading a segment. `is_any(i)` says whether token i is `**`. The result
/// is sorted and without duplicates, and the work is linear in its length: `**` only links a
/// state to the next, so each run of linked states is walked once.
fn closure(mut states: Vec<usize>, is_any: impl Fn(usize) -> bool) -> Vec<usize> {
    states.sort_unstable();
    states.dedup();
    let mut out: Vec<usize> = Vec::with_capacity(states.len());
    for s in states {
        // `out` ends with a run that starts below `s`; if `s` is inside it, so is its closure.
        if out.last().is_some_and(|&last| s <= last) {
            continue;
        }
        let mut t = s;
        out.push(t);
        while is_any(t) {
            t += 1;
            out.push(t);
        }
    }
    out
}

/// A pattern token with its literal numbered, so that a step compares numbers, not strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(usize),
    One,
    Any,
}

/// `tokens` with each literal replaced by its number in `ids`, numbering new ones.
fn intern<'a>(tokens: &'a [Token], ids: &mut HashMap<&'a str, usize>) -> Vec<Tok> {
    tokens
        .iter()
        .map(|t| match t {
            Token::Literal(l) => {
                let fresh = ids.len();
                Tok::Lit(*ids.entry(l.as_str()).or_insert(fresh))
            }
            Token::One => Tok::One,
            Token::Any => Tok::Any,
        })
        .collect()
}

/// [`closure`] for an interned pattern.
fn close(tokens: &[Tok], states: Vec<usize>) -> Vec<usize> {
    closure(states, |s| tokens.get(s) == Some(&Tok::Any))
}

/// Whether closed `states` include the accepting one (after the last token, the largest).
fn accepts(tokens: &[Tok], states: &[usize]) -> bool {
    states.last() == Some(&tokens.len())
}

/// Where one pattern's `states` go on the next segment, before closure: `wild` on any segment
/// (through `*` and `**`), plus `(literal, state)` for the states a given literal also reaches.
fn moves(tokens: &[Tok], states: &[usize]) -> (Vec<usize>, Vec<(usize, usize)>) {
    let mut wild = Vec::new();
    let mut literal = Vec::new();
    for &s in states {
        match tokens.get(s) {
            Some(Tok::Any) => wild.push(s),
            Some(Tok::One) => wild.push(s + 1),
            Some(Tok::Lit(l)) => literal.push((*l, s + 1)),
            None => {}
        }
    }
    (wild, literal)
}

/// A state of the product automaton: the closed states of `wanted`, and those of each held
/// pattern still alive, as (index in `held`, states) in index order. Dead ones are dropped, so a
/// state costs what is alive in it, not the length of the held list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Node {
    wanted: Vec<usize>,
    held: Vec<(usize, Vec<usize>)>,
}

impl Node {
    /// What holding and expanding this state costs, in [`COVERS_BUDGET`] units.
    fn size(&self) -> usize {
        1 + self.wanted.len() + self.held.iter().map(|(_, states)| 1 + states.len()).sum::<usize>()
    }
}

/// An allowance of work for checks whose cost depends on their input (containment, matching,
/// verifyKey's queries): each spends from it, and past it the check stops with [`TooComplex`].
/// One budget spans a whole request, so asking many small questions cannot add up to a big one.
#[derive(Debug, Clone)]
pub struct Budget {
    left: usize,
}

impl Budget {
    /// An allowance of `units`.
    pub fn new(units: usize) -> Self {
        Self { left: units }
    }

    /// Spends `units`, or says the work is too complex.
    pub fn spend(&mut self, units: usize) -> Result<(), TooComplex> {
        match self.left.checked_sub(units) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => {
                self.left = 0;
                Err(TooComplex)
            }
        }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(COVERS_BUDGET)
    }
}

/// Whether every name `wanted` matches is matched by at least one of `held`.
///
/// Exact, but bounded: past [`COVERS_BUDGET`] units of work it gives up with [`TooComplex`],
/// which callers must treat as "no". Names have at least one segment, so the empty sequence of
/// segments is not a name and is not checked: `*.**` covers `**`.
pub fn covers(held: &[Permission], wanted: &Permission) -> Result<bool, TooComplex> {
    covers_within(held, wanted, &mut Budget::default())
}

/// [`covers`], spending from `budget`: one budget for all the checks of a request.
pub fn covers_within(
    held: &[Permission],
    wanted: &Permission,
    budget: &mut Budget,
) -> Result<bool, TooComplex> {
    // Reading every pattern once (the fast paths, then numbering literals) is paid for first.
    budget
        .spend(1 + wanted.tokens.len() + held.iter().map(|h| 1 + h.tokens.len()).sum::<usize>())?;
    // Fast paths, each exact: they answer the common cases without a search.
    // `**` (or `*` alone, or `**.**`) matches every name.
    if held.iter().any(|h| h.tokens.iter().all(|t| *t == Token::Any)) {
        return Ok(true);
    }
    // Every pattern covers itself.
    if held.iter().any(|h| h.tokens == wanted.tokens) {
        return Ok(true);
    }
    // A pattern without wildcards matches exactly one name, its own text.
    if wanted.tokens.iter().all(|t| matches!(t, Token::Literal(_))) {
        for h in held {
            if h.matches_within(&wanted.text, budget)? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    let mut ids = HashMap::new();
    let wanted_tokens = intern(&wanted.tokens, &mut ids);
    let held_tokens: Vec<Vec<Tok>> = held.iter().map(|h| intern(&h.tokens, &mut ids)).collect();
    search(&wanted_tokens, &held_tokens, budget)
}

/// Breadth-first search of the product of `wanted`'s subset automaton with each held one's, for
/// a non-empty name that `wanted` accepts and no held pattern does.
fn search(wanted: &[Tok], held: &[Vec<Tok>], budget: &mut Budget) -> Result<bool, TooComplex> {
    let start = Rc::new(Node {
        wanted: close(wanted, vec![0]),
        held: held.iter().enumerate().map(|(i, h)| (i, close(h, vec![0]))).collect(),
    });
    budget.spend(start.size())?;
    let mut seen: HashSet<Rc<Node>> = HashSet::from([Rc::clone(&start)]);
    let mut queue: VecDeque<Rc<Node>> = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        budget.spend(node.size())?;
        let (wanted_wild, wanted_literal) = moves(wanted, &node.wanted);
        let mut wanted_on: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (l, s) in wanted_literal {
            wanted_on.entry(l).or_default().push(s);
        }
        let mut held_wild: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut held_on: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
        for (i, states) in &node.held {
            let (wild, literal) = moves(&held[*i], states);
            if !wild.is_empty() {
                held_wild.push((*i, wild));
            }
            for (l, s) in literal {
                held_on.entry(l).or_default().push((*i, s));
            }
        }
        // The segments worth trying, `None` standing for every other one. A literal that no
        // current state reads behaves exactly like an unmentioned one, so trying these is
        // exhaustive; and without a wildcard, `wanted` reads only its own literals. There are
        // at most as many as the node has states, which its cost above already paid for.
        let mut symbols: BTreeSet<Option<usize>> = wanted_on.keys().map(|&l| Some(l)).collect();
        if !wanted_wild.is_empty() {
            symbols.extend(held_on.keys().map(|&l| Some(l)));
            symbols.insert(None);
        }
        for symbol in symbols {
            budget.spend(1)?;
            let mut next_wanted = wanted_wild.clone();
            let mut next_held: BTreeMap<usize, Vec<usize>> = held_wild.iter().cloned().collect();
            if let Some(l) = symbol {
                if let Some(states) = wanted_on.get(&l) {
                    next_wanted.extend_from_slice(states);
                }
                for &(i, s) in held_on.get(&l).into_iter().flatten() {
                    next_held.entry(i).or_default().push(s);
                }
            }
            let next = Node {
                wanted: close(wanted, next_wanted),
                held: next_held
                    .into_iter()
                    .map(|(i, states)| (i, close(&held[i], states)))
                    .collect(),
            };
            budget.spend(next.size())?;
            if accepts(wanted, &next.wanted)
                && !next.held.iter().any(|(i, states)| accepts(&held[*i], states))
            {
                return Ok(false);
            }
            let next = Rc::new(next);
            if seen.insert(Rc::clone(&next)) {
                queue.push_back(next);
            }
        }
    }
    Ok(true)
}

/// What a root key may do to an API's keys or to the API itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Create keys in the API (`create_key`).
    CreateKey,
    /// Read the API's keys (`read_key`).
    ReadKey,
    /// Update the API's keys (`update_key`).
    UpdateKey,
    /// Delete the API's keys (`delete_key`).
    DeleteKey,
    /// Verify the API's keys (`verify_key`).
    VerifyKey,
    /// Store a key's plaintext encrypted when creating it (`encrypt_key`).
    EncryptKey,
    /// Reveal a stored key's plaintext (`decrypt_key`).
    DecryptKey,
    /// Read the API itself (`read_api`).
    ReadApi,
    /// Create APIs (`create_api`); a new API has no id yet, so see [`Perm::create_api`].
    CreateApi,
    /// Update the API itself (`update_api`).
    UpdateApi,
    /// Delete the API itself (`delete_api`).
    DeleteApi,
}

impl Action {
    /// The action's segment in a permission name, such as `read_key`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CreateKey => "create_key",
            Self::ReadKey => "read_key",
            Self::UpdateKey => "update_key",
            Self::DeleteKey => "delete_key",
            Self::VerifyKey => "verify_key",
            Self::EncryptKey => "encrypt_key",
            Self::DecryptKey => "decrypt_key",
            Self::ReadApi => "read_api",
            Self::CreateApi => "create_api",
            Self::UpdateApi => "update_api",
            Self::DeleteApi => "delete_api",
        }
    }
}

/// What a root key may do to identities: Unkey's `identity.*.<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityAction {
    /// `create_identity`.
    Create,
    /// `read_identity`.
    Read,
    /// `update_identity`.
    Update,
    /// `delete_identity`.
    Delete,
}

impl IdentityAction {
    /// The action's segment in a permission name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create_identity",
            Self::Read => "read_identity",
            Self::Update => "update_identity",
            Self::Delete => "delete_identity",
        }
    }
}

/// What a root key may do in a rate-limit namespace: Unkey's `ratelimit.<namespaceId>.<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RatelimitAction {
    /// `limit`: `ratelimit.limit` and `ratelimit.multiLimit`.
    Limit,
    /// `set_override`.
    SetOverride,
    /// `read_override`: `getOverride` and `listOverrides`.
    ReadOverride,
    /// `delete_override`.
    DeleteOverride,
}

impl RatelimitAction {
    /// The action's segment in a permission name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Limit => "limit",
            Self::SetOverride => "set_override",
            Self::ReadOverride => "read_override",
            Self::DeleteOverride => "delete_override",
        }
    }
}

/// A concrete permission a call needs: built only through these constructors, never formatted by
/// hand, so a misspelled check does not compile.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Perm(String);

impl Perm {
    /// `api.<api_id>.<action>`.
    ///
    /// `api_id` always makes one segment: API ids are generated (`api_` and base58), but were one
    /// ever to hold a `.`, `api_1.x` would otherwise be matched by a held `api.api_1.**`. So `.`
    /// is written `%2E`, and `%` is written `%25` to keep different ids different.
    pub fn api(api_id: &str, action: Action) -> Self {
        Self(format!("api.{}.{}", one_segment(api_id), action.as_str()))
    }

    /// `api.*.create_api`: creating an API, which has no id yet. A held pattern must match this
    /// literal name, so `api.*.create_api` and `api.**` allow it and `api.api_1.*` does not.
    pub fn create_api() -> Self {
        Self(format!("api.*.{}", Action::CreateApi.as_str()))
    }

    /// `identity.*.<action>`: identities have no per-identity permissions, as in Unkey.
    pub fn identity(action: IdentityAction) -> Self {
        Self(format!("identity.*.{}", action.as_str()))
    }

    /// `ratelimit.<namespace_id>.<action>`, the id made one segment as in [`Perm::api`].
    pub fn ratelimit(namespace_id: &str, action: RatelimitAction) -> Self {
        Self(format!("ratelimit.{}.{}", one_segment(namespace_id), action.as_str()))
    }

    /// `ratelimit.*.<action>` as a literal name: acting in a namespace that does not exist yet
    /// (created on first use). Only a pattern matching every namespace allows it.
    pub fn ratelimit_any_namespace(action: RatelimitAction) -> Self {
        Self(format!("ratelimit.*.{}", action.as_str()))
    }

    /// `root_key.*.manage`: creating, listing, updating, rerolling and deleting root keys.
    pub fn manage_root_keys() -> Self {
        Self("root_key.*.manage".to_owned())
    }

    /// The permission name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Perm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `id` as exactly one segment of a name (see [`Perm::api`]).
fn one_segment(id: &str) -> Cow<'_, str> {
    if id.contains(['.', '%']) {
        Cow::Owned(id.replace('%', "%25").replace('.', "%2E"))
    } else {
        Cow::Borrowed(id)
    }
}

/// Whether any of `held` matches `needed`: the one policy check a call makes before acting.
pub fn allows(held: &[Permission], needed: &Perm) -> bool {
    held.iter().any(|p| p.matches(needed.as_str()))
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
        self.holds_within(held, &mut Budget::new(usize::MAX)).unwrap_or(false)
    }

    /// [`Query::holds`], spending from `budget`: the key's permissions and the query both come
    /// from callers, and their product can be large.
    pub fn holds_within(
        &self,
        held: &[Permission],
        budget: &mut Budget,
    ) -> Result<bool, TooComplex> {
        match self {
            Self::Name(name) => {
                for p in held {
                    if p.matches_within(name, budget)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Self::And(a, b) => Ok(a.holds_within(held, budget)? && b.holds_within(held, budget)?),
            Self::Or(a, b) => Ok(a.holds_within(held, budget)? || b.holds_within(held, budget)?),
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
mod glob_properties;
#[cfg(test)]
mod query_properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Permission {
        Permission::parse(s).unwrap()
    }

    /// `covers`, for tests whose inputs are within the budget.
    fn c(held: &[Permission], wanted: &str) -> bool {
        covers(held, &p(wanted)).unwrap()
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
        assert!(c(&held, "api.api_9.read_key"));
        assert!(c(&held, "api.*.read_key"));
        assert!(c(&held, "api.api_1.create_key"));
        assert!(c(&held, "api.api_1.*"));
        assert!(c(&held, "api.api_1"), "** includes zero segments");
        assert!(!c(&held, "api.*.create_key"));
        assert!(!c(&held, "api.**"));
        assert!(!c(&held, "**"));
        assert!(!c(&[p("api.*")], "api.*.x"));
        assert!(c(&[p("**")], "anything.at.all"));
        assert!(c(&[p("*")], "**"), "'*' alone is everything");
        assert!(!c(&[], "a"));
        assert!(!c(&[], "**"));
    }

    #[test]
    fn a_union_can_cover_what_no_single_permission_does() {
        // a.** = {a} ∪ {a.x…}; a alone covers the first, a.*.** the rest.
        let held = [p("a"), p("a.*.**")];
        assert!(c(&held, "a.**"));
        assert!(!c(&held[1..], "a.**"));
    }

    #[test]
    fn names_have_at_least_one_segment_so_one_or_more_covers_any_number() {
        assert!(c(&[p("*.**")], "**"));
        assert!(c(&[p("*.**")], "**.**"));
        assert!(!c(&[p("*.*.**")], "**"));
    }

    /// `**.a` then sixty `*`: its automaton must remember which of the last sixty segments were
    /// `a`, 2^60 states. Before the budget, checking it took 3 GB and never answered.
    #[test]
    fn an_exponential_pattern_is_refused_quickly() {
        let exploding = p(&format!("**.a{}", ".*".repeat(60)));
        let started = std::time::Instant::now();
        assert_eq!(covers(&[p("root_key.*.manage")], &exploding), Err(TooComplex));
        assert_eq!(covers(&[p("**.a.*.*")], &exploding), Err(TooComplex));
        assert_eq!(covers(&[p("api.*.read_key"), p("**.a.*.*.*")], &exploding), Err(TooComplex));
        let elapsed = started.elapsed();
        assert!(elapsed < std::time::Duration::from_secs(5), "took {elapsed:?}");
        // What the fast paths decide stays decided.
        assert_eq!(covers(&[p("**")], &exploding), Ok(true));
        assert_eq!(covers(std::slice::from_ref(&exploding), &exploding), Ok(true));
        assert!(TooComplex.to_string().contains("too complex"));
    }

    /// Hundreds of held patterns that all stay alive make every state huge and every literal
    /// worth trying; the budget counts that work too, so this ends quickly, never in a grant.
    #[test]
    fn a_huge_alphabet_is_bounded_too() {
        let held: Vec<Permission> = (0..400).map(|n| p(&format!("**.l{n}.*"))).collect();
        let started = std::time::Instant::now();
        assert_ne!(covers(&held, &p("**.*.*")), Ok(true));
        let elapsed = started.elapsed();
        assert!(elapsed < std::time::Duration::from_secs(5), "took {elapsed:?}");
    }

    #[test]
    fn realistic_grants_fit_well_within_the_budget() {
        let mut held = vec![p("api.*.read_key"), p("api.api_1.**"), p("root_key.*.manage")];
        held.extend((2..=50).map(|n| p(&format!("api.api_{n}.*"))));
        let cases = [
            ("api.api_1.*.b.**.c.d.*.e.f.g.h.i.j.k.l.m.n.o.p", true),
            ("api.*.b.**.c.d.*.e.f.g.h.i.j.k.l.m.n.o.p.q", false),
            ("api.api_1.**.x", true),
            ("api.api_1.*.*", true),
            ("api.api_7.*", true),
            ("api.api_7.**", false),
            ("api.api_3.*.**", false),
            ("api.*.read_key", true),
            ("api.*.*", false),
            ("api.api_51.*", false),
            ("api.**.read_key", false),
            ("**.read_key", false),
            ("root_key.*.manage", true),
            ("api.api_2.read_key", true),
        ];
        for (wanted, expected) in cases {
            let mut budget = Budget::default();
            assert_eq!(covers_within(&held, &p(wanted), &mut budget), Ok(expected), "{wanted}");
            let spent = COVERS_BUDGET - budget.left;
            assert!(spent < COVERS_BUDGET / 4, "{wanted} cost {spent}");
        }
    }

    /// Every pattern of 1..=`max` segments over `a`, `b`, `*` and `**`.
    fn small_patterns(max: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut layer = vec![String::new()];
        for _ in 0..max {
            layer = layer
                .iter()
                .flat_map(|prefix| {
                    ["a", "b", "*", "**"].map(|segment| {
                        if prefix.is_empty() {
                            segment.to_owned()
                        } else {
                            format!("{prefix}.{segment}")
                        }
                    })
                })
                .collect();
            out.extend(layer.iter().cloned());
        }
        out
    }

    /// Every name of 1..=`max` segments over `a`, `b` and `c`, where `c` stands for every
    /// literal that the patterns do not mention.
    fn small_names(max: usize) -> Vec<Vec<&'static str>> {
        let mut out = Vec::new();
        let mut layer: Vec<Vec<&'static str>> = vec![Vec::new()];
        for _ in 0..max {
            layer = layer
                .iter()
                .flat_map(|name| {
                    ["a", "b", "c"].map(|segment| {
                        let mut longer = name.clone();
                        longer.push(segment);
                        longer
                    })
                })
                .collect();
            out.extend(layer.iter().cloned());
        }
        out
    }

    /// The glob by its definition, backtracking over what `**` swallows: slow, plainly right.
    fn glob(pattern: &[&str], name: &[&str]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some((&"**", rest)) => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
            Some((&segment, rest)) => name.split_first().is_some_and(|(&first, tail)| {
                (segment == "*" || segment == first) && glob(rest, tail)
            }),
        }
    }

    /// Whether `pattern` matches `name`, by the definition rather than by the automaton.
    fn reference_matches(pattern: &str, name: &[&str]) -> bool {
        // `*` alone means everything, like `**`; anywhere else `*` is one segment.
        pattern == "*" || glob(&pattern.split('.').collect::<Vec<_>>(), name)
    }

    /// Which of `names` the pattern matches, one bit each.
    fn match_bits(pattern: &str, names: &[Vec<&str>]) -> Vec<u64> {
        let mut bits = vec![0u64; names.len().div_ceil(64)];
        for (k, name) in names.iter().enumerate() {
            if reference_matches(pattern, name) {
                bits[k / 64] |= 1u64 << (k % 64);
            }
        }
        bits
    }

    /// Names of up to 6 segments decide inclusion between patterns of up to 3.
    ///
    /// A pattern of at most 3 segments with a `**` has at most 2 other segments, so on a name of
    /// 2 or more segments it looks only at the name's first two segments, its last two, and
    /// which literals occur anywhere in it (`**.a.**`). A name of 7 or more segments therefore
    /// has a twin of 4 to 6 that every such pattern treats alike: its first two and last two
    /// segments with, between them, one occurrence of each literal of its middle that those four
    /// lack (at most two of `a`, `b`, `c`, since they hold at least one). Patterns without `**`
    /// match at most 3 segments, so neither name. So if some name is matched by `wanted` and by
    /// none of `held`, one of at most 6 segments is.
    const REFERENCE_NAME_SEGMENTS: usize = 6;

    #[test]
    fn matches_agrees_with_a_brute_force_glob() {
        let names = small_names(REFERENCE_NAME_SEGMENTS);
        let texts: Vec<String> = names.iter().map(|n| n.join(".")).collect();
        for pattern in small_patterns(3) {
            let parsed = p(&pattern);
            for (name, text) in names.iter().zip(&texts) {
                let expected = reference_matches(&pattern, name);
                assert_eq!(parsed.matches(text), expected, "{pattern} on {text}");
            }
        }
    }

    /// Every small pattern, parsed and with the names it matches by the reference.
    struct Small {
        patterns: Vec<String>,
        parsed: Vec<Permission>,
        bits: Vec<Vec<u64>>,
    }

    impl Small {
        fn new() -> Self {
            let patterns = small_patterns(3);
            let names = small_names(REFERENCE_NAME_SEGMENTS);
            let bits = patterns.iter().map(|q| match_bits(q, &names)).collect();
            let parsed = patterns.iter().map(|q| p(q.as_str())).collect();
            Self { patterns, parsed, bits }
        }

        /// Compares `covers` with the reference: no name that `wanted` matches is missed by
        /// every one of `held`.
        fn check(&self, held: &[usize], wanted: usize) {
            let expected = self.bits[wanted].iter().enumerate().all(|(k, word)| {
                let union = held.iter().fold(0u64, |acc, &h| acc | self.bits[h][k]);
                (word & !union) == 0
            });
            let permissions: Vec<Permission> =
                held.iter().map(|&h| self.parsed[h].clone()).collect();
            let texts: Vec<&str> = held.iter().map(|&h| self.patterns[h].as_str()).collect();
            assert_eq!(
                covers(&permissions, &self.parsed[wanted]),
                Ok(expected),
                "{texts:?} covering {}",
                self.patterns[wanted]
            );
        }
    }

    #[test]
    fn covers_agrees_with_brute_force_inclusion() {
        let small = Small::new();
        let count = small.patterns.len();
        let segments = |i: usize| small.patterns[i].split('.').count();
        // Some pairs, to exercise unions while keeping the run short: `a` with every pattern
        // (unions that split by length, like `a` with `a.*.**` for `a.**`), and every two
        // patterns of two segments.
        let Some(a) = small.patterns.iter().position(|q| q == "a") else {
            panic!("`a` is a small pattern");
        };
        let mut pairs: Vec<[usize; 2]> = (0..count).filter(|&h| h != a).map(|h| [a, h]).collect();
        let two: Vec<usize> = (0..count).filter(|&i| segments(i) == 2).collect();
        for (k, &i) in two.iter().enumerate() {
            for &j in &two[k + 1..] {
                pairs.push([i, j]);
            }
        }
        for wanted in 0..count {
            small.check(&[], wanted);
            for h in 0..count {
                small.check(&[h], wanted);
            }
            for pair in &pairs {
                small.check(pair, wanted);
            }
        }
    }

    const ALL_ACTIONS: [Action; 11] = [
        Action::CreateKey,
        Action::ReadKey,
        Action::UpdateKey,
        Action::DeleteKey,
        Action::VerifyKey,
        Action::EncryptKey,
        Action::DecryptKey,
        Action::ReadApi,
        Action::CreateApi,
        Action::UpdateApi,
        Action::DeleteApi,
    ];

    #[test]
    fn perms_are_the_names_the_api_has_always_checked() {
        assert_eq!(Perm::api("api_1", Action::ReadKey).as_str(), "api.api_1.read_key");
        assert_eq!(Perm::api("api_1", Action::DecryptKey).to_string(), "api.api_1.decrypt_key");
        assert_eq!(Perm::create_api().as_str(), "api.*.create_api");
        assert_eq!(Perm::manage_root_keys().to_string(), "root_key.*.manage");
        let names: HashSet<&str> = ALL_ACTIONS.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), ALL_ACTIONS.len(), "each action its own name");
        for action in ALL_ACTIONS {
            let segment = action.as_str();
            assert!(segment.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{segment}");
        }
    }

    #[test]
    fn allows_needs_a_held_pattern_matching_the_perm() {
        let held = [p("api.*.read_key"), p("api.api_1.*")];
        assert!(allows(&held, &Perm::api("api_9", Action::ReadKey)));
        assert!(allows(&held, &Perm::api("api_1", Action::DeleteApi)));
        assert!(!allows(&held, &Perm::api("api_9", Action::DecryptKey)));
        assert!(!allows(&held, &Perm::create_api()), "api.api_1.* names one API, not creation");
        assert!(!allows(&held, &Perm::manage_root_keys()));
        assert!(!allows(&[], &Perm::api("api_1", Action::ReadKey)));
        assert!(allows(&[p("api.*.create_api")], &Perm::create_api()));
        assert!(allows(&[p("api.**")], &Perm::create_api()));
        assert!(allows(&[p("root_key.*.manage")], &Perm::manage_root_keys()));
        for everything in [p("**"), p("*")] {
            let held = std::slice::from_ref(&everything);
            for action in ALL_ACTIONS {
                assert!(allows(held, &Perm::api("api_1", action)), "{action:?}");
            }
            assert!(allows(held, &Perm::create_api()));
            assert!(allows(held, &Perm::manage_root_keys()));
        }
    }

    #[test]
    fn an_api_id_is_always_one_segment() {
        let odd = Perm::api("api_1.x", Action::ReadKey);
        assert_eq!(odd.as_str(), "api.api_1%2Ex.read_key");
        assert!(!allows(&[p("api.api_1.**")], &odd));
        assert!(allows(&[p("api.*.read_key")], &odd));
        assert_ne!(Perm::api("a%2Eb", Action::ReadKey), Perm::api("a.b", Action::ReadKey));
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
