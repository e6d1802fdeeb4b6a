//! Early-media announcement: SDP offer/answer, G.711, WAV loading, RTP packetizing, RFC 4733
//! DTMF detection, the RTP port pool and the async player that ties them together.

pub mod announcements;
mod config;
pub mod destinations;
pub mod dtmf;
pub mod g711;
pub mod player;
pub mod ports;
pub mod rtp;
pub mod sdp;
pub mod wav;

pub use config::{MediaSettings, Settings};
pub use dtmf::DtmfDetector;
pub use g711::Codec;
pub use player::{PlayEnd, PlayOutcome, play};
pub use ports::{PortLease, PortPool};
pub use rtp::Packetizer;
pub use sdp::{Answer, Direction, LocalMedia, Offer, SdpError, negotiate};
pub use wav::{Announcement, WavError};
