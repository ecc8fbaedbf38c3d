//! Human output for the remote subcommands: aligned tables like `pm2 list`,
//! and short durations and sizes.

use std::fmt::Write as _;

/// Columns padded to their widest cell; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// `93s` → `1m33s`; `0` → `-`.
pub fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 if ms == 0 => "-".into(),
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Bytes as `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
}

/// `text` fit for a terminal: escape sequences and control characters
/// (but newlines and tabs) removed. Log lines and results are a tenant's
/// bytes, and an escape sequence printed raw can retitle, recolour or (on
/// some terminals) feed input to the operator's terminal.
pub fn for_terminal(text: &[u8]) -> Vec<u8> {
    // The stripper drops tabs too; they travel as a private-use character.
    const TAB: char = '\u{e000}';
    let text = String::from_utf8_lossy(text).replace('\t', "\u{e000}");
    let stripped = strip_ansi_escapes::strip(text.as_bytes());
    String::from_utf8_lossy(&stripped)
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .map(|c| if c == TAB { '\t' } else { c })
        .collect::<String>()
        .into_bytes()
}

/// A stream's bytes made fit for a terminal a whole line at a time, so an
/// escape sequence or a UTF-8 character split across two reads is judged
/// whole, not mangled into U+FFFD or half-kept.
#[derive(Debug, Default)]
pub struct TerminalLines {
    partial: Vec<u8>,
}

impl TerminalLines {
    /// The complete lines `chunk` ends, cleaned; the rest waits.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.partial.extend_from_slice(chunk);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let lines = std::mem::replace(&mut self.partial, rest);
        for_terminal(&lines)
    }

    /// What is left at the end of the stream, cleaned.
    pub fn finish(&mut self) -> Vec<u8> {
        for_terminal(&std::mem::take(&mut self.partial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_or_an_escape_split_across_reads_is_judged_whole() {
        let text = "caf\u{e9} \x1b]0;owned\x07ok\nnext \u{1f600}\n".as_bytes();
        for cut in 0..text.len() {
            let mut lines = TerminalLines::default();
            let mut out = lines.push(&text[..cut]);
            out.extend(lines.push(&text[cut..]));
            out.extend(lines.finish());
            assert_eq!(
                String::from_utf8(out).expect("utf-8"),
                "caf\u{e9} ok\nnext \u{1f600}\n",
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn tables_align_and_durations_shorten() {
        let t = table(
            &["NAME", "STATE"],
            &[
                vec!["web".into(), "running".into()],
                vec!["worker-long".into(), "fatal".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME         STATE\nweb          running\nworker-long  fatal\n"
        );
        assert_eq!(duration_ms(0), "-");
        assert_eq!(duration_ms(93_000), "1m33s");
        assert_eq!(duration_ms(7_380_000), "2h03m");
    }

    #[test]
    fn a_terminal_gets_no_escape_sequence() {
        // An 8-bit CSI (U+009B) is a control character; a lone 0x9B byte
        // is not UTF-8 and prints as U+FFFD, which no terminal acts on.
        let line = "ok \x1b]0;pwned\x07\x1b[31mred\x1b[0m \u{9b}2J\x08\r\x00 done\n\tnext\n";
        let clean = String::from_utf8(for_terminal(line.as_bytes())).expect("utf-8");
        assert_eq!(clean, "ok red 2J done\n\tnext\n");
        let raw = String::from_utf8(for_terminal(b"a\x9bb")).expect("utf-8");
        assert_eq!(raw, "a\u{fffd}b");
    }
}
