//! Text from outside (instance names, API and server messages) made safe to
//! print: control characters escaped, so a name cannot forge a log line or
//! send escape sequences to a terminal.

use std::fmt::{self, Write};

/// Displays its text with every control character escaped (`\n`, `\u{1b}`).
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// How many terminal columns a text takes: a CJK character (`北京一区`) takes two.
pub fn width(text: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(text)
}

/// Rows under a header, each column as wide as its widest cell (by
/// [`width`]); the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|k| rows.iter().filter_map(|r| r.get(k)).map(|c| width(c)).chain([width(header[k])]).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (k, cell) in cells.enumerate() {
            text += cell;
            text += &" ".repeat(widths[k].saturating_sub(width(cell)) + 2);
        }
        out += text.trim_end();
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

/// `1 warning`, `2 warnings`: a count with its noun, plural when it is not one.
pub fn counted(n: usize, one: &str, many: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
}

#[cfg(test)]
mod tests {
    use super::{Shown, table};

    #[test]
    fn wide_characters_keep_columns_aligned() {
        let rows = vec![vec!["北京一区".to_owned(), "H20".to_owned()], vec!["bj2".to_owned(), "4090".to_owned()]];
        let text = table(&["REGION", "GPU"], &rows);
        let columns: Vec<usize> = text.lines().map(|l| super::width(&l[..l.rfind(' ').unwrap() + 1])).collect();
        assert_eq!(columns, [10, 10, 10], "{text}");
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let forged = "nb-alice\n2026-12-02T10:00:00Z  INFO action deleted nb-bob\u{1b}[2J";
        let shown = Shown(forged).to_string();
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(shown.starts_with("nb-alice\\n2026") && shown.ends_with("\\u{1b}[2J"), "{shown}");
        assert_eq!(Shown("实验-1 ok").to_string(), "实验-1 ok");
    }
}
