//! `.difyignore` (falling back to `.gitignore`) for packaging a plugin directory.
//!
//! Implements gitignore semantics, including `!negation`: the last matching pattern decides,
//! and a file inside an excluded directory cannot be re-included (the directory is pruned).
//! Upstream checks patterns in order and stops at the first exclusion, so its negations never
//! re-include anything; here they do, as authors expect from gitignore. This changes what gets
//! packaged only for ignore files that use `!`.
//! Must not: read file contents other than the ignore file itself.

use regex::Regex;

/// One pattern line.
#[derive(Debug, Clone)]
struct Rule {
    negated: bool,
    directory_only: bool,
    regex: Regex,
}

/// Parsed ignore rules, rooted at the plugin directory.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

impl IgnoreRules {
    /// Parses the text of an ignore file. Unparseable lines are skipped.
    pub fn parse(text: &str) -> Self {
        let rules = text.lines().filter_map(parse_line).collect();
        Self { rules }
    }

    /// True when `path` (relative, `/`-separated) is excluded. `is_dir` tells whether the path
    /// is a directory; callers walking a tree must prune excluded directories themselves.
    pub fn is_ignored(&self, path: &str, is_dir: bool) -> bool {
        let mut ignored = false;
        for rule in &self.rules {
            if rule.directory_only && !is_dir {
                continue;
            }
            if rule.regex.is_match(path) {
                ignored = !rule.negated;
            }
        }
        ignored
    }

    /// Like [`is_ignored`](Self::is_ignored), but also true when any parent directory of the
    /// path is excluded.
    pub fn is_path_excluded(&self, path: &str) -> bool {
        let mut prefix_end = 0;
        while let Some(slash) = path[prefix_end..].find('/') {
            let dir = &path[..prefix_end + slash];
            if self.is_ignored(dir, true) {
                return true;
            }
            prefix_end += slash + 1;
        }
        self.is_ignored(path, false)
    }
}

fn parse_line(line: &str) -> Option<Rule> {
    let mut pattern = line.trim();
    if pattern.is_empty() || pattern.starts_with('#') {
        return None;
    }
    let negated = pattern.starts_with('!');
    // Drop the `!` of a negation, or the backslash of an escaped leading `!`/`#`.
    if negated || pattern.starts_with("\\!") || pattern.starts_with("\\#") {
        pattern = &pattern[1..];
    }
    let directory_only = pattern.ends_with('/');
    let pattern = pattern.trim_end_matches('/');
    if pattern.is_empty() {
        return None;
    }
    let anchored = pattern.contains('/');
    let pattern = pattern.trim_start_matches('/');
    let mut regex = String::from(if anchored { "^" } else { "^(?:.*/)?" });
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                let at_segment_start = i == 0 || chars[i - 1] == '/';
                let followed_by_slash = chars.get(i + 2) == Some(&'/');
                let at_end = i + 2 == chars.len();
                if at_segment_start && followed_by_slash {
                    regex.push_str("(?:.*/)?");
                    i += 3;
                } else if at_segment_start && at_end {
                    regex.push_str(".*");
                    i += 2;
                } else {
                    regex.push_str("[^/]*");
                    i += 2;
                }
                continue;
            }
            '*' => regex.push_str("[^/]*"),
            '?' => regex.push_str("[^/]"),
            '[' => {
                let close = chars[i + 1..].iter().position(|&x| x == ']').map(|p| p + i + 1);
                match close {
                    Some(close) if close > i + 1 => {
                        let mut class = String::from("[");
                        let mut body: String = chars[i + 1..close].iter().collect();
                        if body.starts_with('!') || body.starts_with('^') {
                            class.push('^');
                            body.remove(0);
                        }
                        for ch in body.chars() {
                            if ch == '\\' || ch == '[' || ch == ']' || ch == '&' || ch == '~' {
                                class.push('\\');
                            }
                            class.push(ch);
                        }
                        class.push(']');
                        regex.push_str(&class);
                        i = close + 1;
                        continue;
                    }
                    _ => regex.push_str(&regex::escape("[")),
                }
            }
            '\\' if i + 1 < chars.len() => {
                regex.push_str(&regex::escape(&chars[i + 1].to_string()));
                i += 2;
                continue;
            }
            other => regex.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    regex.push('$');
    Regex::new(&regex).ok().map(|regex| Rule { negated, directory_only, regex })
}

#[cfg(test)]
mod tests {
    use super::IgnoreRules;

    #[test]
    fn basic_patterns() {
        let rules = IgnoreRules::parse("# comment\n\n*.pyc\n/build\nignored_paths/\nsub/x.txt\n");
        assert!(rules.is_ignored("a.pyc", false));
        assert!(rules.is_ignored("deep/dir/a.pyc", false));
        assert!(rules.is_ignored("build", true));
        assert!(!rules.is_ignored("src/build", true));
        assert!(rules.is_ignored("ignored_paths", true));
        assert!(!rules.is_ignored("ignored_paths", false));
        assert!(rules.is_ignored("sub/x.txt", false));
        assert!(!rules.is_ignored("other/sub/x.txt", false));
        assert!(rules.is_path_excluded("ignored_paths/a/b.txt"));
        assert!(!rules.is_path_excluded("main.py"));
    }

    #[test]
    fn negation_re_includes_last_match_wins() {
        let rules = IgnoreRules::parse("*.log\n!keep.log\n");
        assert!(rules.is_ignored("a.log", false));
        assert!(!rules.is_ignored("keep.log", false));
        assert!(!rules.is_ignored("dir/keep.log", false));
        let rules = IgnoreRules::parse("!keep.log\n*.log\n");
        assert!(rules.is_ignored("keep.log", false));
    }

    #[test]
    fn negation_cannot_reinclude_inside_excluded_directory() {
        let rules = IgnoreRules::parse("cache/\n!cache/keep.txt\n");
        assert!(rules.is_path_excluded("cache/keep.txt"));
    }

    #[test]
    fn double_star() {
        let rules = IgnoreRules::parse("**/tmp\nlogs/**\na/**/b\n");
        assert!(rules.is_ignored("tmp", true));
        assert!(rules.is_ignored("x/y/tmp", false));
        assert!(rules.is_ignored("logs/a/b.txt", false));
        assert!(rules.is_ignored("a/b", false));
        assert!(rules.is_ignored("a/x/y/b", false));
        assert!(!rules.is_ignored("a/x/y/c", false));
    }
}
