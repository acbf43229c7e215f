//! The data model of gamewire and its file formats. No networking, no GUI: everything else
//! depends on this module and it depends on nothing of the crate.

mod arena;
pub mod files;
pub mod gwcap;
pub mod model;
mod page_window;
pub mod pcapng;
pub mod sdjson;
pub mod store;

pub use arena::ByteSource;
pub use model::{
    Connection, ConnectionId, Direction, NewPacket, Packet, PacketFlags, PacketId, Timestamp,
    TlsInfo, Transport, UNKNOWN_ADDR, ascii_preview,
};
pub use store::{CaptureStore, PacketRef, StoreData, StoreError};
