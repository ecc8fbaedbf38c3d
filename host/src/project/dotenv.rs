//! A project's `.env`, parsed without ever looking at bosun's own
//! environment.
//!
//! The usual parsers (dotenvy included) fill `${X}` from the *reading*
//! process's environment first: a tenant's `.env` saying `T=${GITHUB_TOKEN}`
//! would hand it whatever secret bosun was started with. Here `$X` and
//! `${X}` name only variables defined earlier in the same file (undefined:
//! empty), as a user of Docker Compose or dotenv expects for
//! `URL=postgres://${DB_HOST}/app`.
//!
//! The grammar: `KEY=value` lines, `#` comments, an optional `export `;
//! keys of letters, digits, `_`, `.` and `-`, not starting with a digit;
//! values unquoted (trimmed, ` #` starts a comment), in single quotes
//! (literal, may span lines) or in double quotes (may span lines; `\n`,
//! `\t`, `\r`, `\"`, `\\` and `\$` escapes; substitution). Values are
//! bounded after substitution (64 KiB each, 1 MiB in all), so a file of
//! lines doubling the one before cannot make bosun allocate without end.

use std::collections::HashMap;

/// The longest value, after substitution.
const MAX_VALUE: usize = 64 << 10;
/// All values together, after substitution: `B=$A$A$A…` lines would
/// otherwise double a value with every line, in bosun's own memory.
const MAX_TOTAL: usize = 1 << 20;

/// Why a `.env` did not parse: where, never what (the text is the tenant's
/// and the error goes places it can read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct ParseError {
    /// The 1-based line.
    pub line: usize,
    /// What is wrong, in words.
    pub what: &'static str,
}

/// The variables of `text`, in order.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut known: HashMap<String, String> = HashMap::new();
    let mut rest = text;
    let mut line = 1;
    let mut total = 0;
    while !rest.is_empty() {
        let (stmt, after, lines) = statement(rest, line)?;
        if let Some((key, value)) = stmt {
            let too_big = ParseError {
                line,
                what: "values grow past 64 KiB each or 1 MiB in all",
            };
            let value = match value {
                Value::Literal(v) => v,
                Value::Substituted(v) => substitute(&v, &known).ok_or(too_big.clone())?,
            };
            total += value.len();
            if value.len() > MAX_VALUE || total > MAX_TOTAL {
                return Err(too_big);
            }
            known.insert(key.clone(), value.clone());
            out.push((key, value));
        }
        rest = after;
        line += lines;
    }
    Ok(out)
}

enum Value {
    Literal(String),
    Substituted(String),
}

type Statement<'a> = (Option<(String, Value)>, &'a str, usize);

/// One statement from the start of `text`: the pair (or none, for a blank
/// or comment line), what follows it, and how many lines it took.
fn statement(text: &str, line: usize) -> Result<Statement<'_>, ParseError> {
    let err = |what| ParseError { line, what };
    let (first, next) = text.split_once('\n').unwrap_or((text, ""));
    let trimmed = first.trim_start();
    if trimmed.trim().is_empty() || trimmed.starts_with('#') {
        return Ok((None, next, 1));
    }
    let body = trimmed
        .strip_prefix("export ")
        .unwrap_or(trimmed)
        .trim_start();
    let eq = body.find('=').ok_or(err("expected `KEY=value`"))?;
    let key = body[..eq].trim_end();
    let valid = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    if !valid {
        return Err(err("not a valid variable name"));
    }
    // The value starts after `=` in `text`, so a quote may run past `first`.
    let offset = (first.len() - trimmed.len()) + (trimmed.len() - body.len()) + eq + 1;
    let value = text[offset..].trim_start_matches([' ', '\t']);
    let (value, after, lines) = match value.chars().next() {
        Some(q @ ('\'' | '"')) => {
            let (v, consumed) = quoted(&value[1..], q).ok_or(err("an unclosed quote"))?;
            let tail = &value[1 + consumed..];
            let (tail_line, after) = tail.split_once('\n').unwrap_or((tail, ""));
            let tail_line = tail_line.trim();
            if !tail_line.is_empty() && !tail_line.starts_with('#') {
                return Err(err("text after the closing quote"));
            }
            let lines = value[..1 + consumed].matches('\n').count() + 1;
            let v = if q == '\'' {
                Value::Literal(v)
            } else {
                Value::Substituted(v)
            };
            (v, after, lines)
        }
        _ => {
            let (raw, after) = value.split_once('\n').unwrap_or((value, ""));
            let raw = match raw.find(" #") {
                Some(i) => &raw[..i],
                None => raw,
            };
            (Value::Substituted(raw.trim().to_string()), after, 1)
        }
    };
    Ok((Some((key.to_string(), value)), after, lines))
}

/// The text up to the closing `quote` (escapes resolved in double quotes,
/// `\$` kept as a marker for `substitute`), and the bytes consumed
/// including the closing quote.
fn quoted(text: &str, quote: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Some((out, i + 1)),
            '\\' if quote == '"' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '$' => out.push_str("\\$"),
                    other => out.push(other),
                }
            }
            c => out.push(c),
        }
    }
    None
}

/// Replace `$X` and `${X}` with earlier values (`\$` is a plain `$`);
/// None once the result would pass [`MAX_VALUE`].
fn substitute(value: &str, known: &HashMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find(['$', '\\']) {
        if out.len() > MAX_VALUE {
            return None;
        }
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("\\$") {
            out.push('$');
            rest = after;
            continue;
        }
        if let Some(after) = tail.strip_prefix('\\') {
            out.push('\\');
            rest = after;
            continue;
        }
        let body = &tail[1..];
        let (name, after) = match body.strip_prefix('{') {
            Some(inner) => match inner.find('}') {
                Some(end) => (&inner[..end], &inner[end + 1..]),
                None => ("", body),
            },
            None => {
                let end = body
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(body.len());
                (&body[..end], &body[end..])
            }
        };
        if name.is_empty() {
            out.push('$');
        } else if let Some(v) = known.get(name) {
            if out.len() + v.len() > MAX_VALUE {
                return None;
            }
            out.push_str(v);
        }
        rest = after;
    }
    out.push_str(rest);
    (out.len() <= MAX_VALUE).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).expect("parses")
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn substitution_never_reads_the_process_environment() {
        // PATH is set in every test process; it must not leak in.
        assert_eq!(
            pairs("A=${PATH}\nB=$HOME\nHOST=db\nURL=pg://${HOST}:5432/$HOST\n"),
            vec![
                kv("A", ""),
                kv("B", ""),
                kv("HOST", "db"),
                kv("URL", "pg://db:5432/db")
            ]
        );
    }

    #[test]
    fn quotes_comments_and_export() {
        let text = "# a comment\n\nexport NAME = shop \nSINGLE='keep ${NAME} \\n as is'\n\
                    DOUBLE=\"line\\none \\$NAME ${NAME}\" # trailing\nUNQUOTED=a b # note\n\
                    MULTI=\"one\ntwo\"\nEMPTY=\n";
        assert_eq!(
            pairs(text),
            vec![
                kv("NAME", "shop"),
                kv("SINGLE", "keep ${NAME} \\n as is"),
                kv("DOUBLE", "line\none $NAME shop"),
                kv("UNQUOTED", "a b"),
                kv("MULTI", "one\ntwo"),
                kv("EMPTY", ""),
            ]
        );
    }

    #[test]
    fn a_substitution_bomb_is_refused() {
        let mut text = format!("A={}\n", "x".repeat(1000));
        for (name, prev) in [("B", "A"), ("C", "B"), ("D", "C")] {
            text.push_str(&format!("{name}={}\n", format!("${prev}").repeat(1000)));
        }
        let e = parse(&text).expect_err("too big");
        assert_eq!(e.line, 2);
        let wide = format!("A={}\nB={}\n", "x".repeat(60 << 10), "$A".repeat(400_000));
        assert_eq!(parse(&wide).expect_err("too wide").line, 2);
    }

    #[test]
    fn errors_give_the_line_only() {
        let e = parse("OK=1\n# c\nSECRET='hunter2\n").expect_err("unclosed");
        assert_eq!(
            e,
            ParseError {
                line: 3,
                what: "an unclosed quote"
            }
        );
        let e = parse("OK=1\nnot a pair hunter2\n").expect_err("no =");
        assert_eq!(e.line, 2);
        assert!(!e.to_string().contains("hunter2"));
        assert_eq!(
            parse("1X=2\n").expect_err("name").what,
            "not a valid variable name"
        );
    }
}
