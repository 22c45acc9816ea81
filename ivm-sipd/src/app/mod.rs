//! The application: the server that wires stack, services and store together, the admin
//! commands, the command line, the master keys of encryption at rest and the TLS certificate.

pub mod admin;
pub mod cli;
pub mod master_key;
pub mod server;
pub mod tls;
