//! File transfer logic without I/O: the stream protocol (offer, answer, files), which names
//! may be written, and how content is hashed and verified as it streams. The shell in the
//! net crate moves the bytes and owns the files.

/// Most transfers running at once in each direction of a call: each is a stream the peer
/// opens, so this is also how many streams a call admits beside its control stream.
pub const MAX_TRANSFERS: u32 = 4;

pub mod hash;
pub mod names;
pub mod offer;
pub mod receive;
pub mod send;
pub mod wire;
