//! Making peer-supplied text safe to show.
//!
//! A chat line comes from the other person's device. Printed raw, escape sequences in it
//! could rewrite the terminal (fake prompts, hidden text, changed window titles), and
//! direction marks or long runs of blanks could make it look like our own output (a fake
//! "Verification code:" line). So before display: control characters, line and paragraph
//! separators, direction and zero-width marks become U+FFFD, and runs of whitespace shrink
//! to one space.

/// Control characters and the invisible marks listed above: never in text we show.
pub fn is_invisible_or_control(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}'   // line / paragraph separator
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{061C}'               // Arabic letter mark
            | '\u{FEFF}'               // zero-width no-break space
        )
}

/// The text as it may be printed: see the module docs.
pub fn for_display(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last_space = false;
    for c in s.chars() {
        if c.is_whitespace() && !is_invisible_or_control(c) || c == '\t' {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
            continue;
        }
        last_space = false;
        out.push(if is_invisible_or_control(c) {
            '\u{FFFD}'
        } else {
            c
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_defused() {
        let shown = for_display("hi\x1b]0;pwned\x07\x1b[2J\r\u{202E}txt\u{9b}");
        assert!(!shown.chars().any(|c| c.is_control()));
        assert!(shown.starts_with("hi\u{FFFD}]0;pwned"));
        assert_eq!(for_display("plain text\tok ✓"), "plain text ok ✓");
    }

    #[test]
    fn invisible_and_layout_characters_are_defused() {
        for c in [
            '\u{2028}', '\u{2029}', '\u{200E}', '\u{200F}', '\u{061C}', '\u{200B}', '\u{FEFF}',
        ] {
            assert_eq!(for_display(&format!("a{c}b")), "a\u{FFFD}b", "{:?}", c);
        }
        // Padding that would wrap a fake line into place collapses.
        let padded = format!("x{}Verification code: 000 000", " ".repeat(300));
        assert_eq!(for_display(&padded), "x Verification code: 000 000");
    }
}
