//! Go `filepath.Match` semantics, used to find model files from `predefined` globs: `*` and `?`
//! never match `/`, `[...]` classes negate with `^`, `\` escapes. A malformed pattern matches
//! nothing (Go returns `ErrBadPattern`, which the upstream loader treats as "no match").

/// True when the whole `name` matches `pattern`.
pub fn go_path_match(pattern: &str, name: &str) -> bool {
    go_path_match_checked(pattern, name).unwrap_or(false)
}

/// Like [`go_path_match`], but `None` when the pattern is malformed.
pub fn go_path_match_checked(pattern: &str, name: &str) -> Option<bool> {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    matches(&pattern, &name)
}

/// `None` means the pattern is malformed.
fn matches(pattern: &[char], name: &[char]) -> Option<bool> {
    let (mut p, mut n) = (0usize, 0usize);
    // Backtracking point for the last '*': (pattern index after '*', name index it matched to).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p + 1, n));
                    p += 1;
                    continue;
                }
                '?' => {
                    if n < name.len() && name[n] != '/' {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                '[' => {
                    let (matched, next) = match_class(pattern, p, name.get(n).copied())?;
                    if matched {
                        p = next;
                        n += 1;
                        continue;
                    }
                }
                '\\' => {
                    let escaped = *pattern.get(p + 1)?;
                    if n < name.len() && name[n] == escaped {
                        p += 2;
                        n += 1;
                        continue;
                    }
                }
                literal => {
                    if n < name.len() && name[n] == literal {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
            }
        } else if n == name.len() {
            return Some(true);
        }
        // Mismatch: let the last '*' swallow one more character, never a separator.
        match star {
            Some((after_star, matched_to)) if matched_to < name.len() && name[matched_to] != '/' => {
                star = Some((after_star, matched_to + 1));
                p = after_star;
                n = matched_to + 1;
            }
            _ => {
                // Go still reports a malformed remainder of the pattern as an error.
                validate_rest(&pattern[p.min(pattern.len())..])?;
                return Some(false);
            }
        }
    }
}

/// Matches a `[...]` class at `pattern[start]` against `c`; returns (matched, index after `]`).
fn match_class(pattern: &[char], start: usize, c: Option<char>) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negated = pattern.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let current = *pattern.get(i)?;
        if current == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let (lo, next) = class_char(pattern, i)?;
        i = next;
        let hi = if pattern.get(i) == Some(&'-') && pattern.get(i + 1) != Some(&']') {
            let (hi, next) = class_char(pattern, i + 1)?;
            i = next;
            hi
        } else {
            lo
        };
        if lo > hi {
            return None;
        }
        if let Some(c) = c {
            if lo <= c && c <= hi {
                matched = true;
            }
        }
    }
    let ok = match c {
        Some(c) if c != '/' => matched != negated,
        _ => false,
    };
    Some((ok, i))
}

fn class_char(pattern: &[char], i: usize) -> Option<(char, usize)> {
    match *pattern.get(i)? {
        '\\' => Some((*pattern.get(i + 1)?, i + 2)),
        '-' | ']' if i > 0 && pattern[i - 1] != '[' && pattern[i - 1] != '^' => None,
        c => Some((c, i + 1)),
    }
}

fn validate_rest(rest: &[char]) -> Option<()> {
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            '\\' => {
                rest.get(i + 1)?;
                i += 2;
            }
            '[' => {
                let (_, next) = match_class(rest, i, None)?;
                i = next;
            }
            _ => i += 1,
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::go_path_match;

    #[test]
    fn star_does_not_cross_separators() {
        assert!(go_path_match("models/llm/*.yaml", "models/llm/gpt-4.yaml"));
        assert!(go_path_match("models/llm/*.yaml", "models/llm/_position.yaml"));
        assert!(!go_path_match("models/llm/*.yaml", "models/llm/sub/gpt-4.yaml"));
        assert!(!go_path_match("models/*", "models/llm/x.yaml"));
        assert!(go_path_match("*", "abc"));
        assert!(!go_path_match("*", "a/b"));
        assert!(go_path_match("a*b*c", "axxbyyc"));
        assert!(!go_path_match("a*b*c", "axxbyy"));
    }

    #[test]
    fn classes_question_marks_and_escapes() {
        assert!(go_path_match("m?.yaml", "m1.yaml"));
        assert!(!go_path_match("m?.yaml", "m/.yaml"));
        assert!(go_path_match("[a-c]x", "bx"));
        assert!(!go_path_match("[^a-c]x", "bx"));
        assert!(go_path_match("[^a-c]x", "dx"));
        assert!(go_path_match("\\*", "*"));
        assert!(!go_path_match("\\*", "a"));
        assert!(!go_path_match("[a-", "a"));
        assert!(!go_path_match("abc", "ab"));
        assert!(go_path_match("", ""));
    }
}
