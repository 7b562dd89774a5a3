//! plumbline-transport: the wires between the stages of the flow.
//!
//! Length-prefixed frames over TCP ([`tcp`]): connecting with retries ([`retry`], the one
//! policy of every connect), and listening safely by default; the pipeline's `tcp://` / `ipc://` endpoints ([`endpoint`]); the closed set of
//! data planes a flag can name, as one URL-parsed [`config::TransportConfig`]; and the broker
//! backends behind one producer/consumer pair of traits ([`broker`]); and the object stores
//! bulk data travels through by reference ([`store`]); the clock offset exchange between hosts
//! ([`clock`]). What travels (frames,
//! headers) is defined in plumbline-core; when it is sent is the load crate's business.

pub mod broker;
pub mod clock;
pub mod config;
pub mod endpoint;
pub mod retry;
pub mod store;
pub mod tcp;
