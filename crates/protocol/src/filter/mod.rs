//! The RFC 7644 §3.4.2.2 filter language: an AST, a parser that reports byte positions, a
//! printer whose output parses back to the same AST, and an evaluator over JSON resources.

mod eval;
mod parser;

use std::fmt;

use crate::path::AttrPath;

pub use eval::parse_instant;
pub use eval::{compare_values, FilterContext};
pub(crate) use parser::parse_value_filter;
pub use parser::{parse_filter, FilterError, ParseLimits};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    fn from_word(word: &str) -> Option<CompareOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }

    /// Whether the operator orders values (and so is undefined for booleans and binaries).
    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }

    /// Whether the operator works on substrings.
    pub fn is_substring(self) -> bool {
        matches!(self, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    }
}

/// A literal on the right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
}

impl Eq for CompValue {}

/// A filter expression. `and` / `or` chains are n-ary so that long chains do not nest deeply;
/// nesting only comes from parentheses, `not` and value paths, and the parser bounds it.
///
/// ```
/// use scimgate_protocol::{CompValue, Filter};
///
/// let filter = Filter::parse(r#"userName eq "bjensen" and not (title pr)"#).unwrap();
/// let Filter::And(items) = &filter else { panic!("an and-chain") };
/// assert!(matches!(&items[0], Filter::Compare { value: CompValue::String(s), .. } if s == "bjensen"));
/// assert_eq!(filter.to_string(), r#"userName eq "bjensen" and not (title pr)"#);
/// let err = Filter::parse(r#"userName eq"#).unwrap_err();
/// assert_eq!(err.position, 11);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    Present(AttrPath),
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// `emails[type eq "work"]`: some value of a multi-valued attribute matches the inner
    /// filter, whose paths are relative to that value.
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

impl Filter {
    /// Parses with the default limits.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        parse_filter(text, &ParseLimits::default())
    }

    /// If this filter only selects values of sub-attribute `sub` equal to string literals
    /// (`value eq "a"`, `value eq "a" or value eq "b"`), those literals. Used to turn
    /// `members[value eq "…"]` into a lookup by id.
    pub fn equality_literals(&self, sub: &str) -> Option<Vec<&str>> {
        match self {
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value: CompValue::String(s),
            } if path.urn.is_none()
                && path.sub.is_none()
                && path.name.eq_ignore_ascii_case(sub) =>
            {
                Some(vec![s.as_str()])
            }
            Filter::Or(items) => {
                let mut out = Vec::new();
                for item in items {
                    out.extend(item.equality_literals(sub)?);
                }
                Some(out)
            }
            _ => None,
        }
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Null => f.write_str("null"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Number(n) => write!(f, "{n}"),
            CompValue::String(s) => {
                let quoted = serde_json::to_string(s).map_err(|_| fmt::Error)?;
                f.write_str(&quoted)
            }
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => write!(f, "{path} {} {value}", op.as_str()),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::And(items) => write_joined(f, items, " and ", |c| {
                matches!(c, Filter::And(_) | Filter::Or(_))
            }),
            Filter::Or(items) => write_joined(f, items, " or ", |c| matches!(c, Filter::Or(_))),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

fn write_joined(
    f: &mut fmt::Formatter<'_>,
    items: &[Filter],
    separator: &str,
    needs_parens: impl Fn(&Filter) -> bool,
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        if needs_parens(item) {
            write!(f, "({item})")?;
        } else {
            write!(f, "{item}")?;
        }
    }
    Ok(())
}
