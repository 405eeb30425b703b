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

#[cfg(test)]
mod tests {
    use super::*;

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
