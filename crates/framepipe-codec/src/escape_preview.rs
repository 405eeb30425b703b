//! Showing bytes from the wire in a message: one way to escape them.

/// The first `max` bytes of `bytes` for a message: printable ASCII as is, every other byte escaped
/// as [`std::ascii::escape_default`] does (`\r`, `\n`, `\t`, `\x00`, `\xff`, and `\"`, `\'`, `\\`),
/// and `…` appended if `bytes` is longer than `max`.
///
/// The result is plain ASCII apart from the `…`, so bytes from a hostile peer cannot forge lines or
/// terminal escapes in a log. Costs one `String` of at most `4 × max + 3` bytes.
///
/// ```
/// use framepipe_codec::escape_preview;
///
/// assert_eq!(escape_preview(b"GET / HTTP/1.1\r\n", 32), r"GET / HTTP/1.1\r\n");
/// assert_eq!(escape_preview(b"\x16\x03\x01\x02\x00", 4), r"\x16\x03\x01\x02…");
/// ```
pub fn escape_preview(bytes: &[u8], max: usize) -> String {
    let mut out: String = bytes
        .iter()
        .take(max)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if bytes.len() > max {
        out.push('…');
    }
    out
}

/// `text` from a peer, made safe for a log line or a report: every control character (C0, DEL and
/// C1, so newlines and terminal escapes among them) escaped as Rust writes it (`\n`, `\u{1b}`), and
/// a backslash doubled so that an escape cannot be forged; printable characters, non-ASCII ones
/// included, as they are. Borrows when there is nothing to escape.
///
/// ```
/// use framepipe_codec::escape_text;
///
/// assert_eq!(escape_text("frame 3 refused"), "frame 3 refused");
/// assert_eq!(escape_text("ok\nWARN forged\x1b[2J"), r"ok\nWARN forged\u{1b}[2J");
/// ```
pub fn escape_text(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() || c == '\\') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_keeps_printable_characters_and_escapes_controls() {
        assert_eq!(escape_text("déjà vu …"), "déjà vu …");
        assert_eq!(escape_text("a\r\nb\tc"), r"a\r\nb\tc");
        assert_eq!(
            escape_text("\u{1b}[31mred\u{7f}\u{85}"),
            r"\u{1b}[31mred\u{7f}\u{85}"
        );
        // A peer cannot forge an escape that reads as one it did not send.
        assert_eq!(escape_text(r"\n"), r"\\n");
        assert!(!escape_text("x\ny").contains('\n'));
    }

    #[test]
    fn the_preview_escapes_and_is_short() {
        assert_eq!(
            escape_preview(b"HTTP/1.1 400 Bad Request\r\n\r\n", 32),
            r"HTTP/1.1 400 Bad Request\r\n\r\n"
        );
        assert_eq!(escape_preview(b"\x00\xff\"a", 32), r#"\x00\xff\"a"#);
        assert_eq!(escape_preview(b"\t'\\\x7f", 32), r"\t\'\\\x7f");
        let long = escape_preview(&[b'a'; 1000], 32);
        assert_eq!(long, format!("{}…", "a".repeat(32)));
    }

    #[test]
    fn the_cut_is_counted_in_bytes_before_escaping() {
        assert_eq!(escape_preview(b"abcd", 4), "abcd");
        assert_eq!(escape_preview(b"abcde", 4), "abcd…");
        assert_eq!(escape_preview(b"\xff\xff\xff", 2), r"\xff\xff…");
        assert_eq!(escape_preview(b"abc", 0), "…");
        assert_eq!(escape_preview(b"", 0), "");
    }
}
