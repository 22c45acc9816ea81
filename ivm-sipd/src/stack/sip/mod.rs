//! The SIP message layer, ours (see DEPENDENCIES.md: the measured crates fail 15 or more of
//! the RFC 4475 torture messages): lexing, URIs, headers, typed header values, messages,
//! parsing from bytes and framing on streams. Nothing here does I/O.

pub mod fields;
pub mod framing;
pub mod header;
pub mod message;
pub mod method;
pub mod name_addr;
pub mod param;
pub mod parse;
pub mod scan;
pub mod uri;
pub mod via;

pub use header::{Header, HeaderName, Headers};
pub use message::{Message, Request, Response, SipHeaders};
pub use method::{CSeq, Method};
pub use name_addr::{Contact, NameAddr};
pub use parse::{ErrorKind, Framing, ParseError, parse_message};
pub use uri::{Host, SipUri, Uri};
pub use via::Via;

#[cfg(test)]
mod rfc4475_tests;
