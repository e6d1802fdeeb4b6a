//! The SIP wire layer: framing (RFC 3261 §18.3, RFC 5626 §4.4.1), parsing (§7, §19, §20, §25,
//! RFC 5118) and response building (§8.2.6). Sans-IO: bytes in, values out.

pub mod body;
mod error;
pub mod framing;
mod header;
pub mod mediasec;
mod message;
mod name_addr;
mod params;
mod response;
mod uri;
mod via;

#[cfg(test)]
mod debug_tests;
#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod torture_tests;

pub use error::{FramingError, ParseError, ReplyHeaders, SyntaxError};
pub use framing::{StreamDecoder, StreamItem, frame_datagram};
pub use header::{Header, Headers, canonical, split_list};
pub use message::{CSeq, Message, Method, Request, Response, parse};
pub use name_addr::NameAddr;
pub use params::{Param, Params};
pub use response::{ResponseBuilder, build_response, generate_tag};
pub use uri::{Host, SipUri, TelUri, Uri, unescape};
pub use via::{Via, ViaParams};

// The edge: transactions, UAS decisions and the transport shells around them.
pub mod acl;
pub mod edge;
pub mod limit;
pub mod reliable;
pub mod route;
pub mod scanner;
pub mod stats;
pub mod tcp;
pub mod tls;
pub mod transaction;
pub mod uas;
pub mod udp;

pub use acl::Acl;
