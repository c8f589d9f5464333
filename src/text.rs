//! Text helpers shared below `plan` and `report`: bounding long texts that come from hosts
//! (a hook's stderr, tar errors on a full disk) before they reach a history record, a result
//! or a terminal.

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

#[cfg(test)]
mod tests {
    use super::*;

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
