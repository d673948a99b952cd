//! Media transport logic, free of I/O: the fixed-size media datagram with redundancy, the
//! adaptive jitter buffer, and the clock that tells the driver which frames are due.
//!
//! ```text
//!  sender:   frames ──► Packetizer (fixed size, previous frames in the padding) ──► datagram
//!  receiver: datagram ──► parse ──► JitterBuffer::push (each frame, duplicates ignored)
//!            device clock ──► JitterBuffer::pop every frame ──► decode / conceal ──► speaker
//! ```

pub mod clock;
pub mod jitter;
pub mod packet;
pub mod stream;

pub use clock::{Due, MediaClock};
pub use jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
pub use packet::{MediaPacket, PacketError, Packetizer, Repair};
pub use stream::{AudioStream, AudioStreamConfig, AudioStreamStats, AudioWork, RichMode};
