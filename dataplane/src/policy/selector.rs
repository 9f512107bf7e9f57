//! Tag selectors: a small expression language over `key=value` tags.
//!
//! Grammar (loosest binding first):
//!
//! ```text
//! expr    := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!" unary | primary
//! primary := "(" expr ")" | "all()" | "has(" key ")"
//!          | key "==" value | key "!=" value
//!          | key "in" set | key "not" "in" set
//! set     := "{" [ value ( "," value )* ] "}"
//! value   := word | 'quoted' | "quoted"
//! word    := one or more of  A-Z a-z 0-9 _ - . / : @ $ *
//! ```
//!
//! A key has at most one value in a [`TagSet`]. `k != v` and `k not in {..}`
//! also match when `k` is absent (as in Calico); write `has(k) && k != v` to
//! require the key. A selector is parsed once into a flat node array; matching
//! it against a tag set walks that array and never allocates.

use std::fmt;

/// A set of tags, at most one value per key, sorted by key.
///
/// Stored in two allocations whatever the number of tags (a directory holds
/// one per identity, so this matters at 100k identities): the keys and
/// values concatenated in key order, and where each ends.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TagSet {
    text: Box<str>,
    /// Per tag, the end of its key and of its value in `text`; the key starts
    /// where the previous value ends.
    ends: Box<[(u32, u32)]>,
}

impl PartialOrd for TagSet {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TagSet {
    /// Lexicographic over the (key, value) pairs in key order.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.iter().cmp(other.iter())
    }
}

impl fmt::Debug for TagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Why a `key=value` tag list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagError {
    /// The tag has no `=` or an empty key.
    Malformed(String),
    /// The key appears twice.
    DuplicateKey(String),
}

impl fmt::Display for TagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagError::Malformed(t) => write!(f, "{t:?} is not a key=value tag"),
            TagError::DuplicateKey(k) => write!(f, "key {k:?} appears more than once"),
        }
    }
}

impl TagSet {
    /// Builds a tag set from `key=value` strings (the value may be empty, the key may not).
    pub fn parse<S: AsRef<str>>(tags: &[S]) -> Result<TagSet, TagError> {
        // A directory parses one per identity: the pairs of a short list
        // stay on the stack.
        const INLINE: usize = 8;
        if tags.len() <= INLINE {
            let mut buf = [("", ""); INLINE];
            Self::parse_in(tags, &mut buf[..tags.len()])
        } else {
            Self::parse_in(tags, &mut vec![("", ""); tags.len()])
        }
    }

    /// [`TagSet::parse`] with `v` (as long as `tags`) to hold the split pairs.
    fn parse_in<'a, S: AsRef<str>>(tags: &'a [S], v: &mut [(&'a str, &'a str)]) -> Result<TagSet, TagError> {
        let mut len = 0;
        for (t, slot) in tags.iter().zip(v.iter_mut()) {
            let t = t.as_ref();
            let Some((k, val)) = t.split_once('=') else {
                return Err(TagError::Malformed(t.to_string()));
            };
            let k = trim(k);
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii() && is_word_char(char::from(b))) {
                return Err(TagError::Malformed(t.to_string()));
            }
            let val = trim(val);
            len += k.len() + val.len();
            *slot = (k, val);
        }
        if !v.windows(2).all(|w| w[0].0 < w[1].0) {
            v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        for w in v.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(TagError::DuplicateKey(w[0].0.to_string()));
            }
        }
        let Ok(_) = u32::try_from(len) else {
            return Err(TagError::Malformed(format!("{} bytes of tags", len)));
        };
        let mut text = String::with_capacity(len);
        let mut ends = Vec::with_capacity(v.len());
        for &(k, val) in v.iter() {
            text.push_str(k);
            let ke = text.len() as u32;
            text.push_str(val);
            ends.push((ke, text.len() as u32));
        }
        Ok(TagSet { text: text.into_boxed_str(), ends: ends.into_boxed_slice() })
    }

    #[inline]
    fn key(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1].1 as usize };
        &self.text[start..self.ends[i].0 as usize]
    }

    #[inline]
    fn value(&self, i: usize) -> &str {
        let (k, v) = self.ends[i];
        &self.text[k as usize..v as usize]
    }

    /// The value of `key`, if present.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&str> {
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.value(mid)),
            }
        }
        None
    }

    /// The tags in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        (0..self.ends.len()).map(move |i| (self.key(i), self.value(i)))
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl fmt::Display for TagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// One node of a parsed selector. Children are indices into [`Selector::nodes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    All,
    Has(Box<str>),
    Eq(Box<str>, Box<str>),
    Ne(Box<str>, Box<str>),
    In(Box<str>, Box<[Box<str>]>),
    NotIn(Box<str>, Box<[Box<str>]>),
    Not(u32),
    And(u32, u32),
    Or(u32, u32),
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    source: Box<str>,
    nodes: Vec<Node>,
    root: u32,
}

/// A selector that did not parse: where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    pub source: String,
    /// 1-based character column; `len + 1` means the end of the text.
    pub column: usize,
    pub expected: &'static str,
    /// What stood there instead (`None` at the end of the text).
    pub found: Option<String>,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "selector {:?} at column {}: expected {}", self.source, self.column, self.expected)?;
        if let Some(found) = &self.found {
            write!(f, ", found {found:?}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SelectorError {}

/// `s.trim()`, without decoding characters when both ends are printable ASCII.
#[inline]
pub(crate) fn trim(s: &str) -> &str {
    let printable = |b: Option<&u8>| b.is_some_and(|&b| b > b' ' && b < 0x7f);
    if printable(s.as_bytes().first()) && printable(s.as_bytes().last()) {
        s
    } else {
        s.trim()
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | '@' | '$' | '*')
}

impl Selector {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut p = Parser { src: text, chars: text.char_indices().collect(), pos: 0, nodes: Vec::new() };
        let root = p.expr(0)?;
        p.skip_ws();
        if p.pos < p.chars.len() {
            return Err(p.error("an operator (&&, ||) or the end of the selector"));
        }
        Ok(Selector { source: text.into(), nodes: p.nodes, root })
    }

    /// `all()`.
    pub fn all() -> Selector {
        Selector { source: "all()".into(), nodes: vec![Node::All], root: 0 }
    }

    /// The text it was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn root(&self) -> u32 {
        self.root
    }

    /// Whether the selector is `all()` (possibly parenthesised).
    pub fn is_all(&self) -> bool {
        matches!(self.nodes[self.root as usize], Node::All)
    }

    /// Whether `tags` satisfy the selector. Never allocates.
    pub fn matches(&self, tags: &TagSet) -> bool {
        self.eval(self.root, tags)
    }

    fn eval(&self, n: u32, tags: &TagSet) -> bool {
        match &self.nodes[n as usize] {
            Node::All => true,
            Node::Has(k) => tags.get(k).is_some(),
            Node::Eq(k, v) => tags.get(k) == Some(&**v),
            Node::Ne(k, v) => tags.get(k) != Some(&**v),
            Node::In(k, vs) => tags.get(k).is_some_and(|x| vs.iter().any(|v| **v == *x)),
            Node::NotIn(k, vs) => !tags.get(k).is_some_and(|x| vs.iter().any(|v| **v == *x)),
            Node::Not(a) => !self.eval(*a, tags),
            Node::And(a, b) => self.eval(*a, tags) && self.eval(*b, tags),
            Node::Or(a, b) => self.eval(*a, tags) || self.eval(*b, tags),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Nesting deeper than this is refused (keeps the recursive parser and evaluator bounded).
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    src: &'a str,
    chars: Vec<(usize, char)>,
    pos: usize,
    nodes: Vec<Node>,
}

impl Parser<'_> {
    fn push(&mut self, n: Node) -> u32 {
        self.nodes.push(n);
        (self.nodes.len() - 1) as u32
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn error(&self, expected: &'static str) -> SelectorError {
        let found = self.chars.get(self.pos).map(|&(i, c)| {
            if is_word_char(c) {
                let end =
                    self.chars[self.pos..].iter().find(|&&(_, c)| !is_word_char(c)).map_or(self.src.len(), |&(j, _)| j);
                self.src[i..end].to_string()
            } else {
                let end = self.chars.get(self.pos + 2).map_or(self.src.len(), |&(j, _)| j);
                let s = &self.src[i..end];
                // Show two-character operators whole, anything else as one character.
                if matches!(s, "&&" | "||" | "==" | "!=") {
                    s.to_string()
                } else {
                    c.to_string()
                }
            }
        });
        SelectorError { source: self.src.to_string(), column: self.pos + 1, expected, found }
    }

    /// Consumes `tok` (after whitespace) if it is next.
    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        let mut i = self.pos;
        for t in tok.chars() {
            if self.chars.get(i).map(|&(_, c)| c) != Some(t) {
                return false;
            }
            i += 1;
        }
        self.pos = i;
        true
    }

    /// Consumes the keyword `kw` if it is next and not the prefix of a longer word.
    fn eat_keyword(&mut self, kw: &str) -> bool {
        self.skip_ws();
        let save = self.pos;
        if self.eat(kw) && !self.peek().is_some_and(is_word_char) {
            return true;
        }
        self.pos = save;
        false
    }

    fn word(&mut self) -> Option<Box<str>> {
        self.skip_ws();
        let start = self.pos;
        while self.peek().is_some_and(is_word_char) {
            self.pos += 1;
        }
        if self.pos == start {
            return None;
        }
        let a = self.chars[start].0;
        let b = self.chars.get(self.pos).map_or(self.src.len(), |&(j, _)| j);
        Some(self.src[a..b].into())
    }

    fn value(&mut self) -> Result<Box<str>, SelectorError> {
        self.skip_ws();
        match self.peek() {
            Some(q @ ('\'' | '"')) => {
                let open = self.pos;
                self.pos += 1;
                let start = self.pos;
                while self.peek().is_some_and(|c| c != q) {
                    self.pos += 1;
                }
                if self.peek().is_none() {
                    self.pos = open;
                    return Err(SelectorError { found: None, ..self.error("a closing quote for this value") });
                }
                let a = self.chars.get(start).map_or(self.src.len(), |&(j, _)| j);
                let b = self.chars[self.pos].0;
                self.pos += 1;
                Ok(self.src[a..b].into())
            }
            _ => self.word().ok_or_else(|| self.error("a value")),
        }
    }

    fn set(&mut self) -> Result<Box<[Box<str>]>, SelectorError> {
        if !self.eat("{") {
            return Err(self.error("'{' opening a set of values"));
        }
        let mut vals = Vec::new();
        if self.eat("}") {
            return Ok(vals.into());
        }
        loop {
            vals.push(self.value()?);
            if self.eat("}") {
                return Ok(vals.into());
            }
            if !self.eat(",") {
                return Err(self.error("',' or '}'"));
            }
        }
    }

    fn expr(&mut self, depth: usize) -> Result<u32, SelectorError> {
        if depth > MAX_DEPTH {
            return Err(self.error("a shallower expression (nesting limit reached)"));
        }
        let mut left = self.and(depth)?;
        while self.eat("||") {
            let right = self.and(depth)?;
            left = self.push(Node::Or(left, right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<u32, SelectorError> {
        let mut left = self.unary(depth)?;
        while self.eat("&&") {
            let right = self.unary(depth)?;
            left = self.push(Node::And(left, right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<u32, SelectorError> {
        self.skip_ws();
        // `!` but not `!=` (a key cannot start with '!' anyway).
        if self.peek() == Some('!') {
            if depth + 1 > MAX_DEPTH {
                return Err(self.error("a shallower expression (nesting limit reached)"));
            }
            self.pos += 1;
            let inner = self.unary(depth + 1)?;
            return Ok(self.push(Node::Not(inner)));
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: usize) -> Result<u32, SelectorError> {
        self.skip_ws();
        if self.eat("(") {
            let inner = self.expr(depth + 1)?;
            if !self.eat(")") {
                return Err(self.error("')'"));
            }
            return Ok(inner);
        }
        let save = self.pos;
        if self.eat_keyword("all") {
            if self.eat("(") {
                if !self.eat(")") {
                    return Err(self.error("')' closing all()"));
                }
                return Ok(self.push(Node::All));
            }
            self.pos = save;
        }
        if self.eat_keyword("has") {
            if self.eat("(") {
                let Some(k) = self.word() else {
                    return Err(self.error("a tag key"));
                };
                if !self.eat(")") {
                    return Err(self.error("')' closing has("));
                }
                return Ok(self.push(Node::Has(k)));
            }
            self.pos = save;
        }
        let Some(key) = self.word() else {
            return Err(self.error("a tag key, '(', '!', all() or has("));
        };
        if self.eat("==") {
            let v = self.value()?;
            return Ok(self.push(Node::Eq(key, v)));
        }
        if self.eat("!=") {
            let v = self.value()?;
            return Ok(self.push(Node::Ne(key, v)));
        }
        if self.eat_keyword("in") {
            let vs = self.set()?;
            return Ok(self.push(Node::In(key, vs)));
        }
        if self.eat_keyword("not") {
            if !self.eat_keyword("in") {
                return Err(self.error("'in' after 'not'"));
            }
            let vs = self.set()?;
            return Ok(self.push(Node::NotIn(key, vs)));
        }
        Err(self.error("'==', '!=', 'in' or 'not in'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[&str]) -> TagSet {
        TagSet::parse(t).unwrap()
    }

    fn m(sel: &str, t: &[&str]) -> bool {
        Selector::parse(sel).unwrap().matches(&tags(t))
    }

    #[test]
    fn operators() {
        let t = ["app=web", "env=prod", "tier=front end"];
        assert!(m("app == web", &t));
        assert!(!m("app == db", &t));
        assert!(m("app != db", &t));
        assert!(m("missing != x", &t));
        assert!(!m("app != web", &t));
        assert!(m("env in {dev, prod}", &t));
        assert!(!m("env in {dev,qa}", &t));
        assert!(!m("missing in {dev}", &t));
        assert!(m("env not in {dev,qa}", &t));
        assert!(m("missing not in {dev}", &t));
        assert!(!m("env not in {prod}", &t));
        assert!(m("has(app)", &t));
        assert!(!m("has(missing)", &t));
        assert!(m("!has(missing)", &t));
        assert!(m("all()", &t));
        assert!(m("tier == 'front end'", &t));
        assert!(m("tier == \"front end\"", &t));
        assert!(!m("env in {}", &t));
    }

    #[test]
    fn precedence_and_parentheses() {
        let t = ["a=1", "b=2"];
        // && binds tighter than ||
        assert!(m("a == 1 || a == 9 && b == 9", &t));
        assert!(!m("(a == 1 || a == 9) && b == 9", &t));
        assert!(m("!(a == 9) && b == 2", &t));
        assert!(!m("!a == 1", &t));
        assert!(m("!!has(a)", &t));
        assert!(m("((all()))", &t));
        assert!(Selector::parse(" ( all() ) ").unwrap().is_all());
    }

    #[test]
    fn keywords_are_not_keys_prefixes() {
        let t = ["allx=1", "hasty=2", "inner=3"];
        assert!(m("allx == 1", &t));
        assert!(m("hasty == 2", &t));
        assert!(m("inner == 3", &t));
        assert!(m("has(inner)", &t));
    }

    #[test]
    fn errors_point_at_the_character() {
        let e = Selector::parse("role == ").unwrap_err();
        assert_eq!(e.to_string(), "selector \"role == \" at column 9: expected a value");
        let e = Selector::parse("role == web &&").unwrap_err();
        assert_eq!(e.column, 15);
        let e = Selector::parse("role = web").unwrap_err();
        assert_eq!(e.column, 6);
        assert!(e.to_string().contains("expected '==', '!=', 'in' or 'not in'"), "{e}");
        let e = Selector::parse("role in {a b}").unwrap_err();
        assert_eq!((e.column, e.found.as_deref()), (12, Some("b")));
        let e = Selector::parse("(a == b").unwrap_err();
        assert_eq!(e.column, 8);
        let e = Selector::parse("a == b c").unwrap_err();
        assert_eq!(e.column, 8);
        let e = Selector::parse("a == 'open").unwrap_err();
        assert_eq!(e.column, 6);
        let e = Selector::parse("a not {x}").unwrap_err();
        assert_eq!(e.column, 7);
        let e = Selector::parse("").unwrap_err();
        assert_eq!(e.column, 1);
        let e = Selector::parse("a == b && || c").unwrap_err();
        assert_eq!(e.found.as_deref(), Some("||"));
        let deep = "(".repeat(100) + "all()" + &")".repeat(100);
        assert!(Selector::parse(&deep).is_err());
        let e = Selector::parse("é == x").unwrap_err();
        assert_eq!(e.column, 1);
    }

    #[test]
    fn tag_sets() {
        assert_eq!(TagSet::parse(&["a=1", "a=2"]).unwrap_err(), TagError::DuplicateKey("a".into()));
        assert!(TagSet::parse(&["novalue"]).is_err());
        assert!(TagSet::parse(&["=x"]).is_err());
        let t = tags(&["b=2", "a=1", "c="]);
        assert_eq!(t.get("a"), Some("1"));
        assert_eq!(t.get("c"), Some(""));
        assert_eq!(t.get("z"), None);
        assert_eq!(t.to_string(), "a=1 b=2 c=");
        // Whitespace around keys and values is trimmed (Unicode too); sorted
        // or not, short or long (past the inline buffer), the same set.
        assert_eq!(tags(&[" b = 2\u{a0}", "\u{2003}a=1\t", "c="]), t);
        assert_eq!(tags(&["a=1", "b=2", "c="]), t);
        let many: Vec<String> = (0..20).rev().map(|i| format!("k{i:02}=v{i}")).collect();
        let m = TagSet::parse(&many).unwrap();
        assert_eq!(m.len(), 20);
        assert_eq!(m.get("k07"), Some("v7"));
        assert_eq!(m.iter().next(), Some(("k00", "v0")));
        let mut dup = many.clone();
        dup.push("k03=x".into());
        assert_eq!(TagSet::parse(&dup).unwrap_err(), TagError::DuplicateKey("k03".into()));
    }
}
