//! Attribute paths (RFC 7644 §3.10): `userName`, `name.givenName`,
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.

use std::fmt;

/// A reference to an attribute, optionally qualified by its schema URN and narrowed to one
/// sub-attribute. Names keep the case they were written in; resolution against a schema is
/// case-insensitive.
///
/// ```
/// use scimgate_protocol::AttrPath;
///
/// let path = AttrPath::parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value").unwrap();
/// assert_eq!(path.urn.as_deref(), Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"));
/// assert_eq!((path.name.as_str(), path.sub.as_deref()), ("manager", Some("value")));
/// assert_eq!(AttrPath::parse("name.1st").unwrap_err().0, 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    pub fn new(name: impl Into<String>) -> Self {
        AttrPath {
            urn: None,
            name: name.into(),
            sub: None,
        }
    }

    pub fn with_sub(name: impl Into<String>, sub: impl Into<String>) -> Self {
        AttrPath {
            urn: None,
            name: name.into(),
            sub: Some(sub.into()),
        }
    }

    /// Parses the text of one attribute path. `Err` carries the byte offset of the first
    /// character that cannot belong to a path, relative to the start of `text`.
    pub fn parse(text: &str) -> Result<AttrPath, (usize, String)> {
        if text.is_empty() {
            return Err((0, "expected an attribute name".into()));
        }
        let (urn, rest, rest_offset) = split_urn(text);
        if let Some(urn) = &urn {
            if rest.is_empty() {
                return Err((
                    urn.len(),
                    "expected an attribute name after the schema URN".into(),
                ));
            }
        }
        let (name, sub) = match rest.find('.') {
            Some(dot) => (&rest[..dot], Some(&rest[dot + 1..])),
            None => (rest, None),
        };
        check_name(name, rest_offset)?;
        if let Some(sub) = sub {
            check_name(sub, rest_offset + name.len() + 1)?;
        }
        Ok(AttrPath {
            urn,
            name: name.to_string(),
            sub: sub.map(str::to_string),
        })
    }

    /// The path with the sub-attribute dropped.
    pub fn parent(&self) -> AttrPath {
        AttrPath {
            urn: self.urn.clone(),
            name: self.name.clone(),
            sub: None,
        }
    }
}

/// Splits a URN-qualified path at the colon before the attribute name. URNs contain dots
/// ("2.0"), so only the text after the last colon can hold the `name.sub` part.
fn split_urn(text: &str) -> (Option<String>, &str, usize) {
    match text.rfind(':') {
        Some(colon) if has_urn_prefix(text) => (
            Some(text[..colon].to_string()),
            &text[colon + 1..],
            colon + 1,
        ),
        _ => (None, text, 0),
    }
}

/// Whether `text` starts with `urn:` in any case. Safe on any UTF-8 input.
pub(crate) fn has_urn_prefix(text: &str) -> bool {
    text.get(..4)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("urn:"))
}

/// RFC 7643 §2.1: ATTRNAME = ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA;
/// `$ref` is the one name the RFC itself uses outside that grammar.
fn check_name(name: &str, offset: usize) -> Result<(), (usize, String)> {
    if name.eq_ignore_ascii_case("$ref") {
        return Ok(());
    }
    let mut chars = name.char_indices();
    match chars.next() {
        None => return Err((offset, "expected an attribute name".into())),
        Some((_, c)) if !c.is_ascii_alphabetic() => {
            return Err((
                offset,
                format!("an attribute name must start with a letter, found '{c}'"),
            ))
        }
        _ => {}
    }
    for (i, c) in chars {
        if !(c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err((
                offset + i,
                format!("unexpected character '{c}' in attribute name"),
            ));
        }
    }
    Ok(())
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_simple_sub_and_urn_paths() {
        assert_eq!(
            AttrPath::parse("userName").unwrap(),
            AttrPath::new("userName")
        );
        assert_eq!(
            AttrPath::parse("name.givenName").unwrap(),
            AttrPath::with_sub("name", "givenName")
        );
        let p = AttrPath::parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        )
        .unwrap();
        assert_eq!(
            p.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(p.name, "manager");
        assert_eq!(p.sub.as_deref(), Some("value"));
        assert_eq!(
            p.to_string(),
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"
        );
        assert_eq!(
            AttrPath::parse("members.$ref").unwrap().sub.as_deref(),
            Some("$ref")
        );
    }

    #[test]
    fn multibyte_text_near_the_urn_prefix_is_an_error_not_a_panic() {
        assert!(AttrPath::parse("ine\u{1a8}\u{1}").is_err());
        assert!(AttrPath::parse("ur\u{e9}").is_err());
    }

    #[test]
    fn reports_the_position_of_bad_characters() {
        assert_eq!(AttrPath::parse("name.giv en").unwrap_err().0, 8);
        assert_eq!(AttrPath::parse("1abc").unwrap_err().0, 0);
        assert_eq!(AttrPath::parse("name.").unwrap_err().0, 5);
        assert!(AttrPath::parse("").is_err());
    }
}
