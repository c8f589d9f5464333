//! Text helpers shared below `plan` and `report`: human-readable byte counts, showing
//! host-supplied (untrusted) text on a terminal (`escape_for_terminal`, the one way it is made
//! safe, and `escape_line`, its one-line form), and bounding long host texts (a hook's stderr,
//! tar errors on a full disk) before they reach a history record, a result or a terminal; and
//! `wildcard_match`, the one `*`/`?` matcher (known_hosts, ssh_config, host selectors).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Human-readable byte counts (binary units).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Renders host-supplied (untrusted) text for a terminal (SPEC §5): every control character but
/// the newline — C0 controls, DEL and the C1 controls U+0080–U+009F — becomes a visible escape
/// (`\r`, `\t`, `\x1b`, `\x7f`, `\u{9b}`), so that no host can clear the screen, set the
/// window title or overwrite a line. Backslashes stay as they are: the result is for reading,
/// not for reversing, and escaping it again changes nothing. Text without control characters
/// is returned as it is.
pub fn escape_for_terminal(text: &str) -> Cow<'_, str> {
    let kept = |character: char| character == '\n' || !character.is_control();
    if text.chars().all(kept) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for character in text.chars() {
        match character {
            character if kept(character) => escaped.push(character),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            // The rest of C0, and DEL.
            '\0'..='\x7f' => {
                let _ = write!(escaped, "\\x{:02x}", u32::from(character));
            }
            // C1.
            _ => {
                let _ = write!(escaped, "\\u{{{:x}}}", u32::from(character));
            }
        }
    }
    Cow::Owned(escaped)
}

/// Host-supplied text that must stay on one line (table cells, progress bar messages, plan
/// lines): `escape_for_terminal`, and newlines shown as `\n`.
pub fn escape_line(text: &str) -> Cow<'_, str> {
    match escape_for_terminal(text) {
        Cow::Borrowed(text) if !text.contains('\n') => Cow::Borrowed(text),
        escaped => Cow::Owned(escaped.replace('\n', "\\n")),
    }
}

/// `text` cut to at most about `limit` bytes: its start and its end, with a marker saying how
/// many bytes were left out in the middle (the end of an error usually says the most).
pub fn shorten(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let keep = limit.saturating_sub(40) / 2;
    let mut head = keep.min(text.len());
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len().saturating_sub(keep).max(head);
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} [... {} bytes cut ...] {}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

/// RFC 3339 form of unix seconds read from a host; `None` past year 9999 (a hostile or broken
/// host line must not overflow the clock arithmetic).
pub fn rfc3339_of_unix(seconds: u64) -> Option<String> {
    const LAST_SECOND_OF_9999: u64 = 253_402_300_799;
    if seconds > LAST_SECOND_OF_9999 {
        return None;
    }
    let time = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(seconds))?;
    Some(humantime::format_rfc3339_seconds(time).to_string())
}

/// OpenSSH-style wildcards, the one matcher of the tool (known_hosts and ssh_config patterns,
/// host selectors): `*` matches any run of bytes (also none), `?` exactly one, everything else
/// itself. Iterative with one backtrack point (the last `*`): no exponential backtracking.
pub fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut pattern_index, mut text_index) = (0, 0);
    // Position after the last `*` seen, and the text position it is currently matched up to.
    let mut backtrack: Option<(usize, usize)> = None;
    while text_index < text.len() {
        match pattern.get(pattern_index) {
            Some(b'*') => {
                pattern_index += 1;
                backtrack = Some((pattern_index, text_index));
            }
            Some(&byte) if byte == b'?' || byte == text[text_index] => {
                pattern_index += 1;
                text_index += 1;
            }
            _ => match backtrack {
                Some((star_pattern, star_text)) => {
                    pattern_index = star_pattern;
                    text_index = star_text + 1;
                    backtrack = Some((star_pattern, star_text + 1));
                }
                None => return false,
            },
        }
    }
    pattern[pattern_index..].iter().all(|&byte| byte == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human_readable() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(50 * 1024 * 1024), "50.0 MiB");
    }

    #[test]
    fn terminal_escapes_make_control_characters_visible() {
        let hostile = "a\u{1b}[2J\u{1b}]0;title\u{7}b\rc\td\u{7f}e\u{9b}f\u{85}g\\h\nnext line ü";
        insta::assert_snapshot!(escape_for_terminal(hostile), @r"
        a\x1b[2J\x1b]0;title\x07b\rc\td\x7fe\u{9b}f\u{85}g\h
        next line ü
        ");
        assert_eq!(escape_line("one\ntwo\u{1b}"), "one\\ntwo\\x1b");
    }

    #[test]
    fn terminal_escapes_leave_clean_text_alone_and_are_idempotent() {
        assert!(matches!(
            escape_for_terminal("plain text\nwith ünïcode and \\ backslash"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(escape_line("plain"), Cow::Borrowed(_)));
        let once = escape_for_terminal("x\u{1b}\u{0}\u{9f}\r\n").into_owned();
        assert_eq!(escape_for_terminal(&once), once);
        assert!(
            !once
                .chars()
                .any(|character| character != '\n' && character.is_control())
        );
    }

    #[test]
    fn short_texts_are_kept_and_long_ones_keep_both_ends() {
        assert_eq!(shorten("abc", 10), "abc");
        let long = format!("start{}end", "x".repeat(10_000));
        let cut = shorten(&long, 200);
        assert!(cut.len() <= 220, "{}", cut.len());
        assert!(cut.starts_with("start") && cut.ends_with("end"), "{cut}");
        assert!(cut.contains("bytes cut"), "{cut}");
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let long = "é".repeat(5_000);
        let cut = shorten(&long, 101);
        assert!(cut.contains("bytes cut"));
        assert!(cut.len() < 200);
    }
}
