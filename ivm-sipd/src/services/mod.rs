//! The services above the SIP stack: what IVM does with each request. Each service the
//! router offers requests to implements [`crate::stack::router::Service`]: the registrar
//! (REGISTER), MWI (SUBSCRIBE to `message-summary`), presence (PUBLISH) and calls (INVITE, with the sender,
//! target and retrieval legs); notifications listen to what calls report; the dial plan and
//! trunks say where a call goes; the guard bans guessing and scanning sources and limits floods.

pub mod calls;
pub mod dial_plan;
pub mod guard;
pub mod mwi;
pub mod notification;
pub mod presence;
pub mod registrar;
pub mod trunk;
