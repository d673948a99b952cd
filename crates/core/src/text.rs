//! Making peer-supplied text safe to show.
//!
//! A chat line comes from the other person's device. Printed raw, escape sequences in it
//! could rewrite the terminal (fake prompts, hidden text, changed window titles), so every
//! control character except tab is replaced before display.

/// Replaces control characters (C0, DEL, C1) and bidirectional overrides with U+FFFD.
pub fn for_display(s: &str) -> String {
    s.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
            if (c.is_control() && c != '\t') || bidi {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_defused() {
        let shown = for_display("hi\x1b]0;pwned\x07\x1b[2J\r\u{202E}txt\u{9b}");
        assert!(!shown.chars().any(|c| c.is_control()));
        assert!(shown.starts_with("hi\u{FFFD}]0;pwned"));
        assert_eq!(for_display("plain text\tok ✓"), "plain text\tok ✓");
    }
}
