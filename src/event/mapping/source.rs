//! Where a mapped field comes from: a JSON pointer into the record, a header, the key, or a literal.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// One place a field's value may come from, written as text in the config:
/// `/properties/url` (a JSON pointer, RFC 6901), `header:ce_id`, `key`, or `=value` (a literal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The value at this path of object keys (or array indices) in the record.
    Pointer(Vec<String>),
    /// The value of the Kafka header with this name, as UTF-8 text.
    Header(String),
    /// The Kafka record key, as UTF-8 text.
    Key,
    /// Where the record was read, `topic/partition/offset`: an id for records that carry none.
    Offset,
    /// This text, always present: the default when it ends a list.
    Literal(String),
}

impl Source {
    /// Parses the config text of a source; the error says what a source looks like.
    pub fn parse(text: &str) -> Result<Source, String> {
        if let Some(literal) = text.strip_prefix('=') {
            return Ok(Source::Literal(literal.to_owned()));
        }
        if let Some(name) = text.strip_prefix("header:") {
            if name.is_empty() {
                return Err("`header:` needs a header name, as in `header:ce_id`".to_owned());
            }
            return Ok(Source::Header(name.to_owned()));
        }
        match text {
            "key" => return Ok(Source::Key),
            "offset" => return Ok(Source::Offset),
            _ => {}
        }
        let Some(path) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a source: write a JSON pointer such as \"/properties/url\", \
                 \"header:NAME\", \"key\", \"offset\" or \"=literal\""
            ));
        };
        path.split('/').map(unescape_segment).collect::<Result<Vec<_>, _>>().map(Source::Pointer)
    }
}

/// RFC 6901: `~1` is `/` and `~0` is `~`; any other `~` is an error.
fn unescape_segment(segment: &str) -> Result<String, String> {
    if !segment.contains('~') {
        return Ok(segment.to_owned());
    }
    let mut out = String::with_capacity(segment.len());
    let mut chars = segment.chars();
    while let Some(c) = chars.next() {
        match (c, c == '~') {
            (_, false) => out.push(c),
            (_, true) => match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return Err(format!("{segment:?}: `~` must be followed by 0 or 1 in a JSON pointer")),
            },
        }
    }
    Ok(out)
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Pointer(segments) => {
                for segment in segments {
                    write!(f, "/{}", segment.replace('~', "~0").replace('/', "~1"))?;
                }
                Ok(())
            }
            Source::Header(name) => write!(f, "header:{name}"),
            Source::Key => f.write_str("key"),
            Source::Offset => f.write_str("offset"),
            Source::Literal(text) => write!(f, "={text}"),
        }
    }
}

/// A field's sources in order of preference: the first one present in a record gives the value.
/// In the config, one source or a list of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources(pub Vec<Source>);

impl Sources {
    /// Parses each text as a [`Source`]; for presets, whose texts are known to be valid.
    pub fn of(texts: &[&str]) -> Sources {
        Sources(texts.iter().filter_map(|text| Source::parse(text).ok()).collect())
    }
}

impl fmt::Display for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.0.iter().map(Source::to_string).collect();
        f.write_str(&texts.join(", "))
    }
}

impl Serialize for Sources {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Source::to_string))
    }
}

impl<'de> Deserialize<'de> for Sources {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SourcesVisitor;
        impl<'de> Visitor<'de> for SourcesVisitor {
            type Value = Sources;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a source such as \"/properties/url\", \"header:NAME\", \"key\" or \"=literal\", or a list")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Sources, E> {
                Source::parse(text).map(|source| Sources(vec![source])).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Sources, A::Error> {
                let mut sources = Vec::new();
                while let Some(text) = seq.next_element::<String>()? {
                    sources.push(Source::parse(&text).map_err(de::Error::custom)?);
                }
                Ok(Sources(sources))
            }
        }
        deserializer.deserialize_any(SourcesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print_back() {
        for text in ["/properties/url", "/a~1b/c~0d", "/items/0", "header:ce_id", "key", "offset", "=page_visit", "="] {
            let source = Source::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"));
            assert_eq!(source.to_string(), text);
        }
        assert_eq!(Source::parse("/a~1b").ok(), Some(Source::Pointer(vec!["a/b".to_owned()])));
    }

    #[test]
    fn a_bad_source_says_what_a_source_looks_like() {
        for (text, expected) in [
            ("properties.url", "is not a source"),
            ("/a~2", "`~` must be followed by 0 or 1"),
            ("header:", "needs a header name"),
        ] {
            let err = Source::parse(text).err().unwrap_or_default();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
