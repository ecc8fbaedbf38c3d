//! Reassembling whole lines from a byte stream written in arbitrary pieces.
//!
//! Used for plugin output and for supervised processes alike: a writer's
//! `write()` boundaries say nothing about line boundaries (an 8 KiB chunk
//! ends mid-line, `print!` writes fragments), so each stream keeps its own
//! partial line and only whole lines come out. One assembler per stream is
//! what guarantees that two streams never splice into one line.

use serde::Serialize;

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The program's stdout.
    Stdout,
    /// The program's stderr.
    Stderr,
    /// bosun itself: a note such as a truncation or an exit.
    Host,
}

/// Longest line passed on whole; a longer one is cut into pieces of this
/// size, each but the last ending with [`SPLIT_MARKER`].
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Appended to each piece of a line cut at [`MAX_LINE_BYTES`].
pub const SPLIT_MARKER: &str = " [bosun: line continues]";

/// The partial line of one stream.
#[derive(Debug, Default)]
pub struct LineAssembler {
    partial: Vec<u8>,
}

impl LineAssembler {
    /// Carry on from `partial`, the unfinished line of another assembler
    /// (the previous bosun image's, in an upgrade).
    pub fn resume(partial: Vec<u8>) -> Self {
        Self { partial }
    }

    /// The unfinished line, for another assembler to carry on from.
    pub fn into_partial(self) -> Vec<u8> {
        self.partial
    }

    /// Feed `bytes`; `emit(line, split)` gets each completed line without its
    /// newline (and without a trailing `\r`); `split` is true for a piece of
    /// an overlong line.
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let (mut text, ends_line) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            while self.partial.len() + text.len() > MAX_LINE_BYTES {
                let room = MAX_LINE_BYTES - self.partial.len();
                self.partial.extend_from_slice(&text[..room]);
                text = &text[room..];
                emit(trim_cr(&self.partial), true);
                self.partial.clear();
            }
            if ends_line {
                if self.partial.is_empty() {
                    emit(trim_cr(text), false);
                } else {
                    self.partial.extend_from_slice(text);
                    emit(trim_cr(&self.partial), false);
                    self.partial.clear();
                }
            } else {
                self.partial.extend_from_slice(text);
            }
        }
    }

    /// Emit the unfinished line, if any (the stream ended without a newline).
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.partial.is_empty() {
            emit(trim_cr(&self.partial), false);
            self.partial.clear();
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A line as text: invalid UTF-8 replaced, and the split marker added to a
/// piece of an overlong line.
pub fn to_text(line: &[u8], split: bool) -> String {
    let mut text = String::from_utf8_lossy(line).into_owned();
    if split {
        text.push_str(SPLIT_MARKER);
    }
    text
}

/// Lines as text, each ending in a newline.
pub fn join<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> String {
    let mut text = String::new();
    for line in lines {
        text.push_str(line.as_ref());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&[u8]]) -> Vec<String> {
        let mut asm = LineAssembler::default();
        let mut out = Vec::new();
        for chunk in chunks {
            asm.push(chunk, |l, s| out.push(to_text(l, s)));
        }
        asm.finish(|l, s| out.push(to_text(l, s)));
        out
    }

    #[test]
    fn joins_pieces_and_drops_line_endings() {
        assert_eq!(
            lines_of(&[b"hel", b"lo\r\nwor", b"ld\n", b"tail"]),
            ["hello", "world", "tail"]
        );
        assert_eq!(lines_of(&[b"\n\n"]), ["", ""]);
    }

    #[test]
    fn splits_overlong_lines_with_a_marker() {
        let long = vec![b'a'; MAX_LINE_BYTES * 2 + 10];
        let got = lines_of(&[&long[..100], &long[100..], b"\n"]);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            format!("{}{SPLIT_MARKER}", "a".repeat(MAX_LINE_BYTES))
        );
        assert_eq!(got[2], "a".repeat(10));
    }
}
