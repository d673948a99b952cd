//! Which offered files are taken without asking the person.

use extrasafe_core::PeerId;

/// Who may send files without being asked, and how much.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FilesPolicy {
    /// Ask for every offer.
    #[default]
    Ask,
    /// Decline every offer.
    Nobody,
    /// Accept from these senders (any sender if `None`) up to a total size each offer; ask
    /// for nothing (offers that match no rule are declined).
    From(Vec<(Option<PeerId>, Option<u64>)>),
}

/// What to do with one offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilesDecision {
    Accept,
    Decline,
    Ask,
}

/// Why a policy could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// An entry's size is not like `500M` or `2G`.
    #[error("`{entry}`: the size is not like 500M or 2G")]
    Size { entry: String },
    /// An entry names neither `anyone` nor a peer ID.
    #[error("`{entry}`: {reason}")]
    Peer { entry: String, reason: String },
}

/// "500M", "2G", "1200" (bytes); binary multiples.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

impl FilesPolicy {
    /// `ask` (or nothing), `none`, or entries `anyone[:SIZE]` / `PEER-ID[:SIZE]`.
    pub fn parse(words: &[String]) -> Result<Self, PolicyError> {
        match words {
            [] => Ok(Self::Ask),
            [w] if w == "ask" => Ok(Self::Ask),
            [w] if w == "none" => Ok(Self::Nobody),
            entries => entries
                .iter()
                .map(|e| {
                    let (who, size) = match e.split_once(':') {
                        Some((w, s)) => (w, Some(s)),
                        None => (e.as_str(), None),
                    };
                    let size = match size {
                        Some(s) => Some(
                            parse_size(s).ok_or_else(|| PolicyError::Size { entry: e.clone() })?,
                        ),
                        None => None,
                    };
                    let who = if who == "anyone" {
                        None
                    } else {
                        Some(who.parse::<PeerId>().map_err(|r| PolicyError::Peer {
                            entry: e.clone(),
                            reason: r.to_string(),
                        })?)
                    };
                    Ok((who, size))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Self::From),
        }
    }

    /// What to do with an offer of `total` bytes from `from`.
    pub fn decide(&self, from: &PeerId, total: u64) -> FilesDecision {
        match self {
            Self::Ask => FilesDecision::Ask,
            Self::Nobody => FilesDecision::Decline,
            Self::From(rules) => {
                if rules.iter().any(|(who, max)| {
                    who.as_ref().is_none_or(|w| w == from) && max.is_none_or(|m| total <= m)
                }) {
                    FilesDecision::Accept
                } else {
                    FilesDecision::Decline
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sizes_and_senders_decide() {
        let a = extrasafe_net::new_identity().peer_id();
        let b = extrasafe_net::new_identity().peer_id();
        assert_eq!(FilesPolicy::parse(&[]).unwrap(), FilesPolicy::Ask);
        assert_eq!(
            FilesPolicy::parse(&words(&["none"])).unwrap().decide(&a, 1),
            FilesDecision::Decline
        );
        let p = FilesPolicy::parse(&words(&[&format!("{a}:1M"), "anyone:10K"])).unwrap();
        assert_eq!(p.decide(&a, 1 << 20), FilesDecision::Accept);
        assert_eq!(p.decide(&a, (1 << 20) + 1), FilesDecision::Decline);
        assert_eq!(p.decide(&b, 10 << 10), FilesDecision::Accept);
        assert_eq!(p.decide(&b, (10 << 10) + 1), FilesDecision::Decline);
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("99999999999T"), None);
    }

    #[test]
    fn bad_entries_are_typed() {
        assert!(matches!(
            FilesPolicy::parse(&words(&["anyone:lots"])),
            Err(PolicyError::Size { .. })
        ));
        assert!(matches!(
            FilesPolicy::parse(&words(&["bob"])),
            Err(PolicyError::Peer { .. })
        ));
    }
}
