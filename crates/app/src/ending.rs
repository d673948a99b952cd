//! How a call ended, sorted the same way for both front ends: a call that was over as
//! someone chose, one that was not answered, and one that failed, with who can act on the
//! failure. Each front end words it; neither decides it.

use extrasafe_core::wire::HangupReason;
use extrasafe_core::EndReason;

pub use extrasafe_net::Blame;

/// The kind of ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Over because someone chose so: a hang-up, a closed app, our own decline.
    Finished,
    /// The other side did not take the call (declined, busy or silent: to the caller these
    /// may look alike, on purpose).
    NotAnswered,
    /// Something went wrong.
    Failed(Blame),
}

/// Sorts `reason`.
pub fn ending(reason: &EndReason) -> Ending {
    match reason {
        EndReason::LocalHangup
        | EndReason::RemoteHangup
        | EndReason::Shutdown
        | EndReason::RemoteError(HangupReason::Shutdown)
        // We declined, or refused while in another call: our choice.
        | EndReason::DeclinedLocally
        | EndReason::RejectedBusy => Ending::Finished,
        EndReason::Declined | EndReason::Busy | EndReason::NoAnswer => Ending::NotAnswered,
        EndReason::PeerVanished => Ending::Failed(Blame::Network),
        EndReason::IncompatibleVersion { .. }
        | EndReason::RemoteError(HangupReason::IncompatibleVersion) => {
            Ending::Failed(Blame::Incompatible)
        }
        EndReason::ProtocolError(_) | EndReason::RemoteError(_) => Ending::Failed(Blame::Peer),
        // A reason this version does not know yet: the other side's doing.
        _ => Ending::Failed(Blame::Peer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use extrasafe_core::Violation;

    #[test]
    fn every_reason_is_sorted() {
        assert_eq!(ending(&EndReason::RemoteHangup), Ending::Finished);
        assert_eq!(ending(&EndReason::DeclinedLocally), Ending::Finished);
        assert_eq!(ending(&EndReason::Declined), Ending::NotAnswered);
        assert_eq!(ending(&EndReason::Busy), Ending::NotAnswered);
        assert_eq!(ending(&EndReason::NoAnswer), Ending::NotAnswered);
        assert_eq!(
            ending(&EndReason::PeerVanished),
            Ending::Failed(Blame::Network)
        );
        assert_eq!(
            ending(&EndReason::ProtocolError(Violation::Commitment)),
            Ending::Failed(Blame::Peer)
        );
        assert_eq!(
            ending(&EndReason::IncompatibleVersion {
                peer_max: 9,
                peer_min: 9
            }),
            Ending::Failed(Blame::Incompatible)
        );
        assert_eq!(
            ending(&EndReason::RemoteError(HangupReason::Shutdown)),
            Ending::Finished
        );
    }
}
