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

/// `1 warning`, `2 warnings`: a count with its noun, plural when it is not one.
pub fn counted(n: usize, one: &str, many: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
}

#[cfg(test)]
mod tests {
    use super::Shown;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let forged = "nb-alice\n2026-12-02T10:00:00Z  INFO action deleted nb-bob\u{1b}[2J";
        let shown = Shown(forged).to_string();
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(shown.starts_with("nb-alice\\n2026") && shown.ends_with("\\u{1b}[2J"), "{shown}");
        assert_eq!(Shown("实验-1 ok").to_string(), "实验-1 ok");
    }
}
