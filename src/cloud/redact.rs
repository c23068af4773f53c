//! Short excerpts of answer bodies for error messages, with secrets masked.

const EXCERPT_CHARS: usize = 200;
const MASK: &str = "[redacted]";

/// Masks Jupyter tokens (`token=...`), SSH passwords (`"sshPassword": "..."`)
/// and the given literal secrets, then cuts to a short excerpt. Masking comes
/// first so a cut can never leave half a secret behind.
pub fn excerpt(body: &str, secrets: &[&str]) -> String {
    let mut text = mask_after(body, "token=", |c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    text = mask_json_string(&text, "sshPassword");
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, MASK);
    }
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn mask_after(text: &str, marker: &str, in_secret: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let (head, tail) = rest.split_at(at + marker.len());
        out.push_str(head);
        let end = tail.find(|c: char| !in_secret(c)).unwrap_or(tail.len());
        if end > 0 {
            out.push_str(MASK);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Masks the string value after `"key"` and a colon, even when unterminated.
fn mask_json_string(text: &str, key: &str) -> String {
    let quoted = format!("\"{key}\"");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&quoted) {
        let (head, tail) = rest.split_at(at + quoted.len());
        out.push_str(head);
        let after_colon = tail.trim_start().strip_prefix(':').map(str::trim_start);
        match after_colon.and_then(|value| value.strip_prefix('"')) {
            Some(value) => {
                let skipped = tail.len() - value.len();
                out.push_str(&tail[..skipped]);
                out.push_str(MASK);
                let end = value.find('"').unwrap_or(value.len());
                rest = &value[end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_kind_of_secret() {
        let body = r#"{"Jupyterlab":"http://x/jupyter?token=7d27443c5718e75b&a=1","SSH":{"sshPassword": "kEyIX5R2dqJD"},"auth":"bearer tok-123456"}"#;
        let out = excerpt(body, &["tok-123456"]);
        assert!(!out.contains("7d27443c"), "{out}");
        assert!(!out.contains("kEyIX5R2dqJD"), "{out}");
        assert!(!out.contains("tok-123456"), "{out}");
        assert!(out.contains("token=[redacted]&a=1"), "{out}");
        assert!(out.contains(r#""sshPassword": "[redacted]""#), "{out}");
    }

    #[test]
    fn a_cut_never_leaves_half_a_secret() {
        let body = format!(r#"{}"sshPassword":"kEyIX5R2dqJD"#, " x".repeat(98));
        let out = excerpt(&body, &[]);
        assert!(!out.contains("kEy"), "{out}");
        let long = "é".repeat(500);
        assert_eq!(excerpt(&long, &[]).chars().count(), EXCERPT_CHARS + 1);
    }
}
