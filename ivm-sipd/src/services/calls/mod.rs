//! The IVM call (SPEC §4 flows 1–3): a back-to-back user agent that answers the sender's
//! INVITE at once, beeps, records the voice into the fragment store while a fan-out stream
//! carries it live to one outbound leg per target; each target hears the message from its first
//! frame, caught up from the stream when it answers late. Legs are independent tasks: a target
//! never delays the recording or another target. `sender_leg` and `target_leg` own the two
//! kinds of leg, `context` what they share, `service` the door from the router.

mod context;
pub mod events;
mod media_session;
pub mod playback;
pub mod recorder;
pub mod retrieval_leg;
pub mod sender_leg;
mod service;
pub mod target_leg;
pub mod uas_leg;

#[cfg(test)]
pub mod testing;

pub use context::{CODECS, CallResult, CallSettings, Calls, StoreFrames, TELEPHONE_EVENT_PT};
pub use service::CallService;
