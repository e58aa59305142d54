//! Item globs: `*` matches any run of characters, `?` exactly one. No allocation per match.

use memchr::memmem::Finder;

/// A compiled glob pattern over an event's `item`.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: Box<[char]>,
    shape: Shape,
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.pattern == other.pattern
    }
}

/// What a pattern needs to be matched with.
#[derive(Debug, Clone)]
enum Shape {
    /// No wildcards: equality.
    Literal(String),
    /// `*` only: the texts between the stars, found in order by substring search.
    Stars(Vec<Finder<'static>>),
    /// `?` too: a walk character by character.
    Wildcards,
}

impl Glob {
    /// Compiles a pattern.
    pub fn new(pattern: &str) -> Self {
        let shape = if !pattern.contains(['*', '?']) {
            Shape::Literal(pattern.to_owned())
        } else if !pattern.contains('?') {
            Shape::Stars(pattern.split('*').map(|part| Finder::new(part).into_owned()).collect())
        } else {
            Shape::Wildcards
        };
        Glob { pattern: pattern.chars().collect(), shape }
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        match &self.shape {
            Shape::Literal(literal) => literal == text,
            Shape::Stars(parts) => stars_match(parts, text),
            Shape::Wildcards => self.walk(text),
        }
    }

    fn walk(&self, text: &str) -> bool {
        // Greedy match with one backtrack point: the classic linear-time wildcard algorithm.
        let text: &str = text;
        let mut pattern_at = 0;
        let mut text_at = 0;
        let mut star: Option<(usize, usize)> = None;
        let bytes_len = text.len();
        while text_at < bytes_len {
            let current = text[text_at..].chars().next().unwrap_or('\0');
            match self.pattern.get(pattern_at) {
                Some('*') => {
                    star = Some((pattern_at, text_at));
                    pattern_at += 1;
                    continue;
                }
                Some(&wanted) if wanted == '?' || wanted == current => {
                    pattern_at += 1;
                    text_at += current.len_utf8();
                    continue;
                }
                _ => {}
            }
            match star {
                Some((star_pattern, star_text)) => {
                    let skipped = text[star_text..].chars().next().unwrap_or('\0');
                    let resume = star_text + skipped.len_utf8();
                    star = Some((star_pattern, resume));
                    pattern_at = star_pattern + 1;
                    text_at = resume;
                }
                None => return false,
            }
        }
        self.pattern[pattern_at..].iter().all(|c| *c == '*')
    }
}

/// A pattern of literal parts joined by `*` (at least two parts): the first is a prefix, the last a
/// suffix, and those between are found leftmost first, which is enough when only stars join them.
fn stars_match(parts: &[Finder<'static>], text: &str) -> bool {
    let (Some((first, rest)), Some(last)) = (parts.split_first(), parts.last()) else { return false };
    let Some(mut remaining) = text.as_bytes().strip_prefix(first.needle()) else { return false };
    for part in &rest[..rest.len().saturating_sub(1)] {
        match part.find(remaining) {
            Some(at) => remaining = &remaining[at + part.needle().len()..],
            None => return false,
        }
    }
    remaining.ends_with(last.needle())
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn matches_wildcards() {
        let cases = [
            ("*/pricing*", "https://acme.io/pricing?plan=pro", true),
            ("*/pricing*", "https://acme.io/blog", false),
            ("whitepaper-??", "whitepaper-q1", true),
            ("whitepaper-??", "whitepaper-q10", false),
            ("*", "", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("*.pdf", "réport.pdf", true),
            ("r?port", "réport", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(Glob::new(pattern).matches(text), expected, "{pattern} vs {text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn star_patterns_match_as_the_walk_does(pattern in "[ab*]{0,6}", text in "[ab]{0,8}") {
            let glob = Glob::new(&pattern);
            proptest::prop_assert_eq!(glob.matches(&text), glob.walk(&text), "{} vs {}", pattern, text);
        }
    }
}
