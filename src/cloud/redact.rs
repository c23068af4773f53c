//! Short excerpts of answer bodies for error messages, with secrets masked
//! by structure rather than by the look of the secret: the value of every
//! JSON key and every `key=` parameter whose name says it holds a secret is
//! masked whole, up to where that value ends (an unescaped quote, a
//! delimiter), even when the body is cut off inside it.

const EXCERPT_CHARS: usize = 200;
const MASK: &str = "[redacted]";
/// How much of a body is looked at, however large it is.
const SCANNED_BYTES: usize = 64 * 1024;

/// A key whose lowercased name holds one of these names a secret.
const SECRET_WORDS: [&str; 5] = ["password", "passwd", "token", "secret", "authorization"];

/// Masks secret values, the given literal secrets, and what follows
/// `bearer `, then cuts to a short excerpt. Masking comes first so a cut can
/// never leave half a secret behind.
pub fn excerpt(body: &str, secrets: &[&str]) -> String {
    // Only the start is shown; a secret cut off here is masked to the end.
    let mut scanned = body.len().min(SCANNED_BYTES);
    while !body.is_char_boundary(scanned) {
        scanned -= 1;
    }
    let mut text = mask_json_values(&body[..scanned]);
    text = mask_parameters(&text);
    text = mask_bearer(&text);
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, MASK);
    }
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn names_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

/// The JSON string starting at `text[0] == '"'`: its decoded content and
/// the length through its closing quote (the whole text when unterminated).
fn json_string(text: &str) -> (String, usize) {
    let mut content = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (content, i + 1),
            '\\' => match chars.next() {
                Some((_, 'u')) => {
                    let hex: String = chars.by_ref().take(4).map(|(_, h)| h).collect();
                    if let Some(decoded) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        content.push(decoded);
                    }
                }
                Some((_, escaped)) => content.push(escaped),
                None => break,
            },
            c => content.push(c),
        }
    }
    (content, text.len())
}

/// Every `"key": value` whose key names a secret gets its value masked: a
/// string whole (escaped quotes and all), anything else up to `,` `}` `]`.
fn mask_json_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('"') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (key, len) = json_string(rest);
        out.push_str(&rest[..len]);
        rest = &rest[len..];
        let after = rest.trim_start();
        let Some(value) = after.strip_prefix(':').filter(|_| names_a_secret(&key)) else { continue };
        let value = value.trim_start();
        out.push_str(&rest[..rest.len() - value.len()]);
        let end = if value.starts_with('"') {
            json_string(value).1
        } else {
            value.find([',', '}', ']', '\n']).unwrap_or(value.len())
        };
        out.push_str(if value.starts_with('"') { "\"[redacted]\"" } else { MASK });
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Every `name=value` (a URL's query, a form, a log line) whose name names
/// a secret gets its value masked up to the next delimiter.
fn mask_parameters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('=') {
        let head = &rest[..at];
        let name_start =
            head.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).map_or(0, |i| i + 1);
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        if names_a_secret(&head[name_start..]) {
            let end = rest.find(|c: char| c.is_whitespace() || "&\"'#<>,;)]}".contains(c)).unwrap_or(rest.len());
            if end > 0 {
                out.push_str(MASK);
            }
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// What follows `bearer ` (any case), up to whitespace or a quote.
fn mask_bearer(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(at) = lower[from..].find("bearer ").map(|i| from + i + "bearer ".len()) {
        out.push_str(&text[from..at]);
        let end = text[at..].find(|c: char| c.is_whitespace() || c == '"' || c == '\'').map_or(text.len(), |i| at + i);
        if end > at {
            out.push_str(MASK);
        }
        from = end;
    }
    out.push_str(&text[from..]);
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

    /// Tricky bodies, each with the secret `SeCrEt` somewhere in its value:
    /// no excerpt may keep any of it.
    #[test]
    fn a_corpus_of_tricky_cases_leaks_nothing() {
        let corpus = [
            "http://h/jupyter?token=abc.SeCrEt-X",
            "http://h/jupyter?a=1&token=ab%2FSeCrEt#frag",
            "?password=SeCrEt&x=1",
            "PASSWORD=SeCrEt",
            "access_token=SeCrEt;",
            r#"{"sshPassword":"ab\"SeCrEt"}"#,
            r#"{"sshPassword" : "SeCrEt"#,
            r#"{"password": "x\\\"SeCrEt"}"#,
            r#"{"jupyterToken":"SeCrEt"}"#,
            "{\"Token\"\n:\n\"SeCrEt\"}",
            r#"{"password": 5SeCrEt5, "x": 1}"#,
            r#"{"ssh\u0050assword": "SeCrEt"}"#,
            r#"{"SSH":{"sshPassword":"SeCrEt","sshUser":"root"}}"#,
            "Authorization: Bearer SeCrEt.more",
            r#"{"authorization":"Basic SeCrEt"}"#,
            r#"{"clientSecret": ["SeCrEt"]}"#,
        ];
        for body in corpus {
            let out = excerpt(body, &[]);
            assert!(!out.contains("SeCrEt"), "{body} → {out}");
        }
        // What names no secret stays readable.
        assert_eq!(excerpt(r#"{"sshUser":"root","page":2}"#, &[]), r#"{"sshUser":"root","page":2}"#);
        assert_eq!(excerpt("a=1&b=2", &[]), "a=1&b=2");
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
