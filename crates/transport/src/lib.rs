//! plumbline-transport: the wires between the stages of the flow.
//!
//! Today: length-prefixed frames over TCP ([`tcp`]): connecting with retries, and listening
//! safely by default; the pipeline's `tcp://` / `ipc://` endpoints ([`endpoint`]); and the
//! closed set of data planes a flag can name, brokers included, as one URL-parsed
//! [`config::TransportConfig`] (the broker backends themselves come with issue 6). What travels (frames, headers) is defined in plumbline-core; when it is
//! sent is the load crate's business.

pub mod config;
pub mod endpoint;
pub mod tcp;
