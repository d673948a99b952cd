//! File names from a sender are hostile input. A name offered in a transfer becomes a path
//! under the receiver's download folder only through [`SafePath::parse`] (or
//! [`SafePath::parse_with`]), which accepts plain relative names and nothing that could climb
//! out, hide, or confuse: no hidden component (`.config/autostart/x.desktop`,
//! `.ssh/authorized_keys`) unless the receiver allows hidden names ([`NameRules`]), and never
//! a name the receiver keeps for itself ([`is_internal`]).

use unicode_normalization::UnicodeNormalization;

/// Longest name of one path component, in bytes (the usual file-system limit).
pub const MAX_COMPONENT: usize = 255;
/// Longest whole relative path, in bytes.
pub const MAX_PATH: usize = 1024;
/// Deepest folder nesting.
pub const MAX_DEPTH: usize = 32;

/// Names starting with this (in any letter case) belong to the receiver: its partial files
/// now, anything it may keep in the download folder later. No sender may offer one, hidden
/// names allowed or not.
pub const INTERNAL_PREFIX: &str = ".extrasafe";

/// Prefix of the receiver's partial files (hidden, and plainly ours; see [`INTERNAL_PREFIX`]).
pub const PARTIAL_PREFIX: &str = ".extrasafe-partial-";

/// Whether a path component is one of the receiver's own names ([`INTERNAL_PREFIX`]).
pub fn is_internal(component: &str) -> bool {
    component
        .get(..INTERNAL_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(INTERNAL_PREFIX))
}

/// What a receiver lets through beyond plain names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NameRules {
    /// Accept hidden components (starting with `.`): `.profile`, `photos/.thumbs/a.jpg`. Off
    /// by default: a hidden name is how a file lands unseen where a program reads it
    /// (`.config/autostart/…`, `.ssh/authorized_keys`, `.bashrc` when the download folder is
    /// a home). Internal names ([`is_internal`]) are refused even when this is on.
    pub allow_hidden: bool,
}

impl NameRules {
    /// Checks a parsed path against these rules (what [`SafePath::parse_with`] checks beyond
    /// the plain-name rules; for a path parsed under other rules).
    pub fn check(&self, path: &SafePath) -> Result<(), NameError> {
        path.components().try_for_each(|c| self.check_component(c))
    }

    fn check_component(&self, part: &str) -> Result<(), NameError> {
        if is_internal(part) {
            return Err(NameError::Internal);
        }
        if part.starts_with('.') && !self.allow_hidden {
            return Err(NameError::Hidden);
        }
        Ok(())
    }
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing left of it.
    #[error("the name is empty")]
    Empty,
    /// Starts at the root (`/x`, `\x`, `C:x`).
    #[error("the name is an absolute path")]
    Absolute,
    /// `.` or `..` as a component.
    #[error("the name climbs folders (`.` or `..`)")]
    Climbs,
    /// A backslash, NUL, control or other character that is unsafe in file names.
    #[error("the name contains a character that is not allowed in file names")]
    BadCharacter,
    /// A name Windows reserves (`CON`, `NUL`, `COM1`…), or one ending in a dot or space.
    #[error("the name is reserved on some systems")]
    Reserved,
    /// Over the length limits.
    #[error("the name is too long")]
    TooLong,
    /// Folders nested too deep.
    #[error("the folders are nested too deep")]
    TooDeep,
    /// A hidden component (starting with `.`) and the receiver does not take hidden names.
    #[error("the name is hidden (starts with a dot)")]
    Hidden,
    /// A name the receiver keeps for its own files ([`INTERNAL_PREFIX`]).
    #[error("the name is reserved for the receiver's own files")]
    Internal,
}

/// A relative path that is safe to create under a download folder: components separated by
/// `/`, each a plain name, Unicode-normalized (NFC).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SafePath(String);

impl SafePath {
    /// Checks a sender's name (components separated by `/`) under the default rules: no
    /// hidden component, no internal name.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        Self::parse_with(raw, NameRules::default())
    }

    /// Checks a sender's name (components separated by `/`) under `rules`.
    pub fn parse_with(raw: &str, rules: NameRules) -> Result<Self, NameError> {
        if raw.len() > 4 * MAX_PATH {
            return Err(NameError::TooLong);
        }
        let nfc: String = raw.nfc().collect();
        if nfc.is_empty() {
            return Err(NameError::Empty);
        }
        if nfc.starts_with('/') {
            return Err(NameError::Absolute);
        }
        if nfc.len() > MAX_PATH {
            return Err(NameError::TooLong);
        }
        let parts: Vec<&str> = nfc.split('/').collect();
        if parts.len() > MAX_DEPTH {
            return Err(NameError::TooDeep);
        }
        for (i, part) in parts.iter().enumerate() {
            check_component(part, i == 0)?;
            rules.check_component(part)?;
        }
        Ok(Self(nfc))
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// As text, `/`-separated.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SafePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_component(part: &str, first: bool) -> Result<(), NameError> {
    if part.is_empty() {
        return Err(NameError::Empty);
    }
    if part == "." || part == ".." {
        return Err(NameError::Climbs);
    }
    if part.len() > MAX_COMPONENT {
        return Err(NameError::TooLong);
    }
    // A drive letter (`C:`) would be absolute on Windows.
    if first && part.len() >= 2 && part.as_bytes()[1] == b':' {
        return Err(NameError::Absolute);
    }
    for c in part.chars() {
        let bad = c.is_control()
            || matches!(c, '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')
            // Bidi overrides and invisible characters disguise a name's real ending.
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}');
        if bad {
            return Err(NameError::BadCharacter);
        }
    }
    if part.ends_with('.') || part.ends_with(' ') || part.starts_with(' ') {
        return Err(NameError::Reserved);
    }
    let stem = part.split('.').next().unwrap_or(part).to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// The `n`-th alternative to a taken name: `report.pdf` → `report (1).pdf`; `archive` →
/// `archive (1)`; the extension is the part after the last dot, unless the name starts
/// with it (`.profile` → `.profile (1)`).
pub fn numbered(name: &str, n: u32) -> String {
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{} ({n}){}", &name[..dot], &name[dot..]),
        _ => format!("{name} ({n})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_and_folders_pass() {
        for ok in [
            "report.pdf",
            "photos/2026/summer.jpg",
            "a b.txt",
            "日本語.txt",
            "not.hidden/x.y",
            "extrasafe-partial-00",
        ] {
            assert_eq!(SafePath::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(
            SafePath::parse("photos/a.jpg").unwrap().file_name(),
            "a.jpg"
        );
    }

    #[test]
    fn names_that_escape_or_deceive_are_refused() {
        use NameError::*;
        let cases: &[(&str, NameError)] = &[
            ("", Empty),
            ("/etc/passwd", Absolute),
            ("C:evil", Absolute),
            ("../x", Climbs),
            ("a/../../x", Climbs),
            ("a/./b", Climbs),
            ("a//b", Empty),
            ("a/", Empty),
            ("..\\..\\x", BadCharacter),
            ("a\\b", BadCharacter),
            ("x\u{0}y", BadCharacter),
            ("bell\u{7}", BadCharacter),
            ("new\nline", BadCharacter),
            ("invoice\u{202E}fdp.exe", BadCharacter),
            ("zero\u{200B}width", BadCharacter),
            ("a:b", Absolute),
            ("ab:c", BadCharacter),
            ("what?", BadCharacter),
            ("CON", Reserved),
            ("nul.txt", Reserved),
            ("com1.log", Reserved),
            ("trailing.", Reserved),
            ("trailing ", Reserved),
        ];
        for (raw, want) in cases {
            assert_eq!(SafePath::parse(raw).as_ref().err(), Some(want), "{raw:?}");
        }
        assert_eq!(SafePath::parse(&"a".repeat(256)), Err(TooLong));
        assert!(SafePath::parse(&"a".repeat(255)).is_ok());
        assert_eq!(SafePath::parse(&["d"; 33].join("/")), Err(TooDeep));
        assert_eq!(
            SafePath::parse(&vec!["x".repeat(200); 6].join("/")),
            Err(TooLong)
        );
        // Not reserved: only the exact device names are.
        assert!(SafePath::parse("console.txt").is_ok() && SafePath::parse("com10").is_ok());
    }

    #[test]
    fn hidden_names_only_when_allowed_and_internal_names_never() {
        let hidden = [
            "..",
            ".profile",
            ".config/autostart/x.desktop",
            ".ssh/authorized_keys",
            "photos/.thumbs/a.jpg",
            "a/b/.x",
        ];
        let allow = NameRules { allow_hidden: true };
        for raw in hidden {
            let strict = SafePath::parse(raw).unwrap_err();
            if raw == ".." {
                assert_eq!(strict, NameError::Climbs);
                assert_eq!(SafePath::parse_with(raw, allow), Err(NameError::Climbs));
                continue;
            }
            assert_eq!(strict, NameError::Hidden, "{raw:?}");
            assert_eq!(SafePath::parse_with(raw, allow).unwrap().as_str(), raw);
        }
        let internal = [
            ".extrasafe-partial-0123456789abcdef0123456789abcdef",
            ".extrasafe-partial-",
            ".ExtraSafe-Partial-00",
            ".extrasafe",
            "photos/.extrasafe-partial-00",
            ".extrasafe-future/x",
        ];
        for raw in internal {
            assert_eq!(SafePath::parse(raw), Err(NameError::Internal), "{raw:?}");
            assert_eq!(
                SafePath::parse_with(raw, allow),
                Err(NameError::Internal),
                "{raw:?}"
            );
        }
        assert!(is_internal(&format!("{PARTIAL_PREFIX}ab")));
        assert!(!is_internal("extrasafe") && !is_internal(".extra") && !is_internal(""));
        // A path parsed under lenient rules is checked again under strict ones.
        let p = SafePath::parse_with(".profile", allow).unwrap();
        assert_eq!(NameRules::default().check(&p), Err(NameError::Hidden));
        assert_eq!(allow.check(&p), Ok(()));
    }

    #[test]
    fn hostile_names_never_panic() {
        // Multi-byte characters cut where the internal prefix would end, and other edges.
        let allow = NameRules { allow_hidden: true };
        for raw in [
            ".extrasaf\u{e9}",
            ".extrasaf\u{1F600}x",
            ".",
            "/",
            "é",
            "\u{301}",
            ".\u{301}",
        ] {
            let _ = SafePath::parse(raw);
            let _ = SafePath::parse_with(raw, allow);
        }
        assert!(!is_internal(".extrasaf\u{e9}"));
    }

    #[test]
    fn names_are_normalized_so_lookalikes_collide() {
        // "é" as one code point and as e + combining accent are the same name.
        let composed = SafePath::parse("caf\u{e9}.txt").unwrap();
        let decomposed = SafePath::parse("cafe\u{301}.txt").unwrap();
        assert_eq!(composed, decomposed);
    }

    #[test]
    fn taken_names_get_numbers() {
        assert_eq!(numbered("report.pdf", 1), "report (1).pdf");
        assert_eq!(numbered("archive.tar.gz", 2), "archive.tar (2).gz");
        assert_eq!(numbered("README", 3), "README (3)");
        assert_eq!(numbered(".profile", 1), ".profile (1)");
    }
}
