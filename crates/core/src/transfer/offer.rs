//! An offer as the receiver sees it: every name checked, sizes added up, no file named twice
//! and no file standing where another needs a folder.

use std::collections::{BTreeMap, BTreeSet};

use super::hash::Hash;
use super::names::{NameError, NameRules, SafePath};
use super::wire::{OfferedFile, MAX_FILES};

/// One offered file, its name made safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidFile {
    /// Where it would go, under the download folder.
    pub path: SafePath,
    /// Length in bytes.
    pub size: u64,
    /// Root hash of the content.
    pub root: Hash,
}

/// An offer that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidOffer {
    /// The files, in the order their data comes.
    pub files: Vec<ValidFile>,
    /// Their total size.
    pub total: u64,
}

/// Why an offer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// No files.
    #[error("the offer is empty")]
    Empty,
    /// Over [`MAX_FILES`].
    #[error("the offer lists more than {MAX_FILES} files")]
    TooMany,
    /// A name that may not be written.
    #[error("the offered name {name:?} is not allowed: {why}")]
    BadName {
        /// The name as offered, defused for display by the caller.
        name: String,
        /// Why.
        why: NameError,
    },
    /// The same path twice (after normalization), or a file where a folder must be.
    #[error("the offer names {0} twice, or as both a file and a folder")]
    Clash(String),
    /// Sizes that add up past any real disk.
    #[error("the offered sizes are impossible")]
    Size,
}

impl ValidOffer {
    /// Checks what a sender offered, under the default name rules (no hidden names).
    pub fn check(files: Vec<OfferedFile>) -> Result<Self, OfferError> {
        Self::check_with(files, NameRules::default())
    }

    /// Checks what a sender offered, its names under `rules`. One name refused refuses the
    /// whole offer, before anything is written.
    pub fn check_with(files: Vec<OfferedFile>, rules: NameRules) -> Result<Self, OfferError> {
        if files.is_empty() {
            return Err(OfferError::Empty);
        }
        if files.len() > MAX_FILES {
            return Err(OfferError::TooMany);
        }
        let mut out = Vec::with_capacity(files.len());
        let mut total: u64 = 0;
        let mut seen_files = BTreeSet::new();
        let mut seen_dirs = BTreeSet::new();
        for f in files {
            let path = SafePath::parse_with(&f.path, rules).map_err(|why| OfferError::BadName {
                name: f.path.clone(),
                why,
            })?;
            // Compare case-insensitively: on many file systems `A.txt` and `a.txt` collide.
            let key = path.as_str().to_lowercase();
            let mut dir = String::new();
            let comps: Vec<&str> = key.split('/').collect();
            for c in &comps[..comps.len() - 1] {
                if !dir.is_empty() {
                    dir.push('/');
                }
                dir.push_str(c);
                if seen_files.contains(&dir) {
                    return Err(OfferError::Clash(path.to_string()));
                }
                seen_dirs.insert(dir.clone());
            }
            if seen_dirs.contains(&key) || !seen_files.insert(key) {
                return Err(OfferError::Clash(path.to_string()));
            }
            total = total.checked_add(f.size).ok_or(OfferError::Size)?;
            // 2^60 bytes: far past any disk, and keeps chunk arithmetic far from overflow.
            if total > 1 << 60 {
                return Err(OfferError::Size);
            }
            out.push(ValidFile {
                path,
                size: f.size,
                root: f.root,
            });
        }
        Ok(Self { files: out, total })
    }

    /// The folders the offer creates directly under the download folder, and loose files
    /// there: what a person sees ("photos/ (120 files)", "report.pdf").
    pub fn top_level(&self) -> Vec<(String, usize, u64)> {
        let mut tops: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        for f in &self.files {
            let first = f.path.components().next().unwrap_or_default();
            let name = if f.path.components().nth(1).is_some() {
                format!("{first}/")
            } else {
                first.to_string()
            };
            let e = tops.entry(name).or_default();
            e.0 += 1;
            e.1 += f.size;
        }
        tops.into_iter().map(|(n, (c, s))| (n, c, s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> OfferedFile {
        OfferedFile {
            path: path.into(),
            size,
            root: [0; 32],
        }
    }

    #[test]
    fn a_folder_of_files_passes_and_is_summarized() {
        let o = ValidOffer::check(vec![
            file("photos/a.jpg", 10),
            file("photos/2026/b.jpg", 20),
            file("notes.txt", 5),
        ])
        .unwrap();
        assert_eq!(o.total, 35);
        assert_eq!(
            o.top_level(),
            vec![
                ("notes.txt".to_string(), 1, 5),
                ("photos/".to_string(), 2, 30)
            ]
        );
    }

    #[test]
    fn clashes_bad_names_and_impossible_sizes_are_refused() {
        let bad = |files: Vec<OfferedFile>| ValidOffer::check(files).unwrap_err();
        assert_eq!(bad(vec![]), OfferError::Empty);
        assert!(matches!(
            bad(vec![file("../x", 1)]),
            OfferError::BadName { .. }
        ));
        assert!(matches!(
            bad(vec![file("a", 1), file("a", 2)]),
            OfferError::Clash(_)
        ));
        assert!(matches!(
            bad(vec![file("A.txt", 1), file("a.txt", 2)]),
            OfferError::Clash(_)
        ));
        // "cafe\u{301}" and "caf\u{e9}" are one name.
        assert!(matches!(
            bad(vec![file("caf\u{e9}", 1), file("cafe\u{301}", 2)]),
            OfferError::Clash(_)
        ));
        assert!(matches!(
            bad(vec![file("a", 1), file("a/b", 2)]),
            OfferError::Clash(_)
        ));
        assert!(matches!(
            bad(vec![file("a/b", 1), file("a", 2)]),
            OfferError::Clash(_)
        ));
        assert_eq!(
            bad(vec![file("a", u64::MAX), file("b", 2)]),
            OfferError::Size
        );
        assert_eq!(bad(vec![file("a", 1 << 61)]), OfferError::Size);
    }

    #[test]
    fn hidden_and_internal_names_refuse_the_whole_offer() {
        let why = |files: Vec<OfferedFile>, rules| match ValidOffer::check_with(files, rules) {
            Err(OfferError::BadName { why, .. }) => Some(why),
            Err(e) => panic!("{e}"),
            Ok(_) => None,
        };
        let strict = NameRules::default();
        let allow = NameRules { allow_hidden: true };
        for hidden in [".config/autostart/x.desktop", ".ssh/authorized_keys"] {
            let files = || vec![file("ok.txt", 1), file(hidden, 2)];
            assert_eq!(why(files(), strict), Some(NameError::Hidden), "{hidden}");
            assert_eq!(
                ValidOffer::check(files()).unwrap_err(),
                ValidOffer::check_with(files(), strict).unwrap_err()
            );
            assert_eq!(why(files(), allow), None, "{hidden}");
        }
        let partial = format!(".extrasafe-partial-{}", "ab".repeat(16));
        for rules in [strict, allow] {
            assert_eq!(
                why(vec![file(&partial, 1)], rules),
                Some(NameError::Internal)
            );
        }
    }
}
