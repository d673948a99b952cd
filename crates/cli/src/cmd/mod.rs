pub mod call;
pub mod demo;
pub mod id;
pub mod listen;
