//! The application: the server that wires stack, services and store together, the admin
//! commands and the command line.

pub mod admin;
pub mod cli;
pub mod server;
