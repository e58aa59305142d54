//! Item globs: `*` matches any run of characters, `?` exactly one. No allocation per match.

/// A compiled glob pattern over an event's `item`.
#[derive(Debug, Clone, PartialEq)]
pub struct Glob {
    pattern: Box<[char]>,
    literal: bool,
}

impl Glob {
    /// Compiles a pattern; a pattern without wildcards compares by equality.
    pub fn new(pattern: &str) -> Self {
        let literal = !pattern.contains(['*', '?']);
        Glob { pattern: pattern.chars().collect(), literal }
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        if self.literal {
            return self.pattern.len() == text.chars().count() && self.pattern.iter().copied().eq(text.chars());
        }
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
}
