//! The services above the SIP stack: what IVM does with each request.

pub mod calls;
pub mod dial_plan;
pub mod notification;
pub mod registrar;
pub mod trunk;
pub mod uas_core;
