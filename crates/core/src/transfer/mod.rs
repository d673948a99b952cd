//! File transfer logic without I/O: which names may be written, and how content is hashed and
//! verified as it streams.

pub mod hash;
pub mod names;
