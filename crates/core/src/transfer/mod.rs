//! File transfer logic without I/O: the stream protocol (offer, answer, files), which names
//! may be written, and how content is hashed and verified as it streams. The shell in the
//! net crate moves the bytes and owns the files.

pub mod hash;
pub mod names;
pub mod offer;
pub mod receive;
pub mod send;
pub mod wire;
