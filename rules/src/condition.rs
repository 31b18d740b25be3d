//! The Sigma `condition` language: tokenizer, parser and the compiled tree.
//!
//! This module owns turning a condition string such as
//! `selection and not 1 of filter*` into a [`Condition`] tree over selection
//! indices. Precedence is `not` over `and` over `or`, both binary operators
//! are left-associative, and parentheses group. `1 of X*` and `all of X*`
//! expand at compile time into `or`/`and` nodes over the selections whose
//! names match the pattern; `them` means every selection whose name does not
//! start with `_` (as the Sigma specification says). The tree is evaluated
//! per event with short-circuiting and no allocation.
//!
//! It must not know how a selection matches: evaluation takes a closure.
//! The deprecated aggregation syntax (`| count() by x > 5`) and `N of` for
//! N other than 1 are reported as unsupported or invalid, never guessed.

use crate::error::RuleErrorKind;

/// Bound on parenthesis and `not` nesting, so that a hostile condition cannot
/// exhaust the stack of the compiler.
const CONDITION_DEPTH_MAX: usize = 64;

/// Bound on the number of tokens in one condition.
const CONDITION_TOKENS_MAX: usize = 4096;

/// A compiled condition over selection indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The selection with this index matched.
    Selection(u32),
    /// The inner condition did not match.
    Not(Box<Condition>),
    /// Every child matched (never empty).
    And(Vec<Condition>),
    /// At least one child matched (never empty).
    Or(Vec<Condition>),
}

impl Condition {
    /// Evaluates the tree, asking `selection` for each leaf it needs.
    pub fn evaluate(&self, selection: &mut impl FnMut(u32) -> bool) -> bool {
        match self {
            Condition::Selection(index) => selection(*index),
            Condition::Not(inner) => !inner.evaluate(selection),
            Condition::And(children) => children.iter().all(|child| child.evaluate(selection)),
            Condition::Or(children) => children.iter().any(|child| child.evaluate(selection)),
        }
    }

    /// Calls `f` with every selection index the tree reads.
    pub fn for_each_selection(&self, f: &mut impl FnMut(u32)) {
        match self {
            Condition::Selection(index) => f(*index),
            Condition::Not(inner) => inner.for_each_selection(f),
            Condition::And(children) | Condition::Or(children) => children
                .iter()
                .for_each(|child| child.for_each_selection(f)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token<'a> {
    LeftParen,
    RightParen,
    And,
    Or,
    Not,
    OneOf,
    AllOf,
    Them,
    Pipe,
    Identifier(&'a str),
}

/// Splits a condition into tokens. Words are separated by whitespace and
/// parentheses; keywords are case-insensitive, identifiers are not.
fn tokenize(text: &str) -> Result<Vec<Token<'_>>, RuleErrorKind> {
    let mut words: Vec<&str> = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        let delimiter = c.is_whitespace() || c == '(' || c == ')' || c == '|';
        if delimiter {
            if let Some(s) = start.take() {
                words.push(&text[s..i]);
            }
            if !c.is_whitespace() {
                words.push(&text[i..i + c.len_utf8()]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
        if words.len() > CONDITION_TOKENS_MAX {
            return Err(RuleErrorKind::invalid("condition has too many tokens"));
        }
    }
    if let Some(s) = start {
        words.push(&text[s..]);
    }
    let mut tokens = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        let next_is_of = words
            .get(i + 1)
            .is_some_and(|next| next.eq_ignore_ascii_case("of"));
        let token = match word {
            "(" => Token::LeftParen,
            ")" => Token::RightParen,
            "|" => Token::Pipe,
            _ if word.eq_ignore_ascii_case("and") => Token::And,
            _ if word.eq_ignore_ascii_case("or") => Token::Or,
            _ if word.eq_ignore_ascii_case("not") => Token::Not,
            _ if word.eq_ignore_ascii_case("them") => Token::Them,
            "1" if next_is_of => {
                i += 1;
                Token::OneOf
            }
            _ if next_is_of && word.eq_ignore_ascii_case("all") => {
                i += 1;
                Token::AllOf
            }
            _ if next_is_of && word.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(RuleErrorKind::unsupported("condition:n-of"));
            }
            _ => Token::Identifier(word),
        };
        tokens.push(token);
        i += 1;
    }
    Ok(tokens)
}

/// Whether a selection name matches a `1 of`/`all of` pattern, where `*` is
/// the only wildcard (any run of characters).
fn name_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return pattern == name;
    };
    if !pattern.contains('*') {
        return pattern == name;
    }
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return true;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

struct Parser<'t, 'n> {
    tokens: Vec<Token<'t>>,
    position: usize,
    names: &'n [&'n str],
    depth: usize,
}

impl<'t> Parser<'t, '_> {
    fn peek(&self) -> Option<&Token<'t>> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token<'t>> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn descend(&mut self) -> Result<(), RuleErrorKind> {
        self.depth += 1;
        if self.depth > CONDITION_DEPTH_MAX {
            return Err(RuleErrorKind::invalid("condition nested too deeply"));
        }
        Ok(())
    }

    fn or_expression(&mut self) -> Result<Condition, RuleErrorKind> {
        let mut children = vec![self.and_expression()?];
        while self.peek() == Some(&Token::Or) {
            self.position += 1;
            children.push(self.and_expression()?);
        }
        Ok(flatten(children, false))
    }

    fn and_expression(&mut self) -> Result<Condition, RuleErrorKind> {
        let mut children = vec![self.not_expression()?];
        while self.peek() == Some(&Token::And) {
            self.position += 1;
            children.push(self.not_expression()?);
        }
        Ok(flatten(children, true))
    }

    fn not_expression(&mut self) -> Result<Condition, RuleErrorKind> {
        if self.peek() == Some(&Token::Not) {
            self.position += 1;
            self.descend()?;
            let inner = self.not_expression()?;
            self.depth -= 1;
            return Ok(Condition::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Condition, RuleErrorKind> {
        match self.next() {
            Some(Token::LeftParen) => {
                self.descend()?;
                let inner = self.or_expression()?;
                self.depth -= 1;
                match self.next() {
                    Some(Token::RightParen) => Ok(inner),
                    _ => Err(RuleErrorKind::invalid("condition: missing ')'")),
                }
            }
            Some(Token::Identifier(name)) => match self.names.iter().position(|n| *n == name) {
                Some(index) => Ok(Condition::Selection(index_u32(index)?)),
                None => Err(RuleErrorKind::invalid(format!(
                    "condition: unknown selection '{name}'"
                ))),
            },
            Some(quantifier @ (Token::OneOf | Token::AllOf)) => {
                let all = quantifier == Token::AllOf;
                let selected: Vec<usize> = match self.next() {
                    Some(Token::Them) => (0..self.names.len())
                        .filter(|&i| !self.names[i].starts_with('_'))
                        .collect(),
                    Some(Token::Identifier(pattern)) => (0..self.names.len())
                        .filter(|&i| name_matches(pattern, self.names[i]))
                        .collect(),
                    _ => {
                        return Err(RuleErrorKind::invalid(
                            "condition: '1 of'/'all of' needs a pattern or 'them'",
                        ))
                    }
                };
                if selected.is_empty() {
                    return Err(RuleErrorKind::invalid(
                        "condition: '1 of'/'all of' pattern matches no selection",
                    ));
                }
                let children = selected
                    .into_iter()
                    .map(|i| index_u32(i).map(Condition::Selection))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(flatten(children, all))
            }
            Some(Token::Pipe) => Err(RuleErrorKind::unsupported("condition:aggregation")),
            Some(token) => Err(RuleErrorKind::invalid(format!(
                "condition: unexpected {token:?}"
            ))),
            None => Err(RuleErrorKind::invalid("condition: unexpected end")),
        }
    }
}

fn index_u32(index: usize) -> Result<u32, RuleErrorKind> {
    u32::try_from(index).map_err(|_| RuleErrorKind::invalid("too many selections"))
}

/// Builds an `and`/`or` node, dropping the node for a single child and
/// merging children of the same operator, so the tree stays shallow.
fn flatten(children: Vec<Condition>, and: bool) -> Condition {
    debug_assert!(!children.is_empty());
    let mut merged = Vec::with_capacity(children.len());
    for child in children {
        match (child, and) {
            (Condition::And(inner), true) | (Condition::Or(inner), false) => merged.extend(inner),
            (other, _) => merged.push(other),
        }
    }
    if merged.len() == 1 {
        if let Some(only) = merged.pop() {
            return only;
        }
    }
    if and {
        Condition::And(merged)
    } else {
        Condition::Or(merged)
    }
}

/// Parses `text` against the selection `names` (in their declaration order;
/// a leaf's index is the position in `names`).
pub fn parse_condition(text: &str, names: &[&str]) -> Result<Condition, RuleErrorKind> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err(RuleErrorKind::invalid("condition is empty"));
    }
    if tokens.contains(&Token::Pipe) {
        return Err(RuleErrorKind::unsupported("condition:aggregation"));
    }
    let mut parser = Parser {
        tokens,
        position: 0,
        names,
        depth: 0,
    };
    let condition = parser.or_expression()?;
    if let Some(token) = parser.peek() {
        return Err(RuleErrorKind::invalid(format!(
            "condition: unexpected {token:?} after the end"
        )));
    }
    debug_assert_eq!(parser.depth, 0);
    Ok(condition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Condition::{And, Not, Or, Selection as S};

    const NAMES: &[&str] = &["sel", "sel_a", "sel_b", "filter", "_hidden", "keywords"];

    fn parse(text: &str) -> Result<Condition, RuleErrorKind> {
        parse_condition(text, NAMES)
    }

    #[test]
    fn single_identifier() {
        assert_eq!(parse("sel"), Ok(S(0)));
        assert_eq!(parse("  (sel)  "), Ok(S(0)));
    }

    #[test]
    fn not_binds_tighter_than_and_tighter_than_or() {
        assert_eq!(
            parse("sel or sel_a and not filter"),
            Ok(Or(vec![S(0), And(vec![S(1), Not(Box::new(S(3)))])]))
        );
        assert_eq!(
            parse("not sel and sel_a"),
            Ok(And(vec![Not(Box::new(S(0))), S(1)]))
        );
        assert_eq!(
            parse("(sel or sel_a) and filter"),
            Ok(And(vec![Or(vec![S(0), S(1)]), S(3)]))
        );
        assert_eq!(parse("not not sel"), Ok(Not(Box::new(Not(Box::new(S(0)))))));
    }

    #[test]
    fn same_operator_chains_are_flattened() {
        assert_eq!(
            parse("sel and sel_a and sel_b"),
            Ok(And(vec![S(0), S(1), S(2)]))
        );
        assert_eq!(
            parse("sel or (sel_a or sel_b)"),
            Ok(Or(vec![S(0), S(1), S(2)]))
        );
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(
            parse("sel AND NOT filter"),
            Ok(And(vec![S(0), Not(Box::new(S(3)))]))
        );
    }

    #[test]
    fn quantifiers_expand_over_names() {
        assert_eq!(parse("1 of sel_*"), Ok(Or(vec![S(1), S(2)])));
        assert_eq!(parse("all of sel*"), Ok(And(vec![S(0), S(1), S(2)])));
        assert_eq!(parse("1 of sel"), Ok(S(0)));
        assert_eq!(
            parse("1 of them"),
            Ok(Or(vec![S(0), S(1), S(2), S(3), S(5)]))
        );
        assert_eq!(
            parse("all of them"),
            Ok(And(vec![S(0), S(1), S(2), S(3), S(5)]))
        );
        assert_eq!(parse("1 of *_b"), Ok(S(2)));
        assert_eq!(
            parse("1 of sel_* and not 1 of filter*"),
            Ok(And(vec![Or(vec![S(1), S(2)]), Not(Box::new(S(3)))]))
        );
        assert_eq!(parse("all of _*"), Ok(S(4)));
    }

    #[test]
    fn errors_are_values() {
        for bad in [
            "",
            "   ",
            "sel and",
            "and sel",
            "(sel",
            "sel)",
            "unknown",
            "1 of nothing*",
            "1 of",
            "sel sel_a",
            "not",
            "()",
            "them",
        ] {
            assert!(
                matches!(parse(bad), Err(RuleErrorKind::Invalid(_))),
                "{bad:?} gave {:?}",
                parse(bad)
            );
        }
        assert_eq!(
            parse("sel | count() by host > 5"),
            Err(RuleErrorKind::unsupported("condition:aggregation"))
        );
        assert_eq!(
            parse("2 of sel*"),
            Err(RuleErrorKind::unsupported("condition:n-of"))
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}sel{}", "(".repeat(1000), ")".repeat(1000));
        assert!(matches!(parse(&deep), Err(RuleErrorKind::Invalid(_))));
        let nots = format!("{}sel", "not ".repeat(1000));
        assert!(matches!(parse(&nots), Err(RuleErrorKind::Invalid(_))));
        let ok = format!("{}sel{}", "(".repeat(10), ")".repeat(10));
        assert_eq!(parse(&ok), Ok(S(0)));
    }

    #[test]
    fn evaluation_short_circuits() {
        let condition = parse("sel and not filter").unwrap_or(S(0));
        let mut asked = Vec::new();
        let result = condition.evaluate(&mut |i| {
            asked.push(i);
            false
        });
        assert!(!result);
        assert_eq!(asked, vec![0]);
    }
}
