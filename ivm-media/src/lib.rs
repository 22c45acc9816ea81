//! ivm-media: everything that touches audio — G.711 and RFC 4733, SDP offer/answer, RTP
//! endpoints and their port pool, the fragment store (the append-only segment log with group
//! commit and recovery) and the live fan-out engine that streams a message being recorded to
//! every listener, late ones included.

pub mod codec;
pub mod dtmf;
pub mod endpoint;
pub mod fanout;
pub mod fragment_store;
pub mod port_pool;
pub mod prompt;
pub mod rtp;
pub mod sdp;
pub mod tone;
pub mod wav;
