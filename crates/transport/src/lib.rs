//! plumbline-transport: the wires between the stages of the flow.
//!
//! Today: length-prefixed frames over TCP ([`tcp`]): connecting with retries, and listening
//! safely by default; and the pipeline's `tcp://` / `ipc://` endpoints ([`endpoint`]). What travels (frames, headers) is defined in plumbline-core; when it is
//! sent is the load crate's business.

pub mod endpoint;
pub mod tcp;
