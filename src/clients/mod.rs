//! The scripted game clients: what the demo, the samples, the load tests and the replay
//! engine's tests run instead of a real game. Each speaks its protocol through the codecs
//! of [`crate::dissect`] (the same ones the servers and the dissectors use) and never
//! reaches into [`crate::servers`], so a client can be pointed at an emulator, a tap or a
//! real server alike.
//!
//! - [`ra3`]: Red Alert 3 (FESL login, then GameSpy GP), step by step with timings;
//! - [`sc`]: Star Citizen (diffusion discovery, HTTP login, gRPC login and notifications);
//! - [`samples`]: the sample captures, built from the clients' requests and the codecs.

pub mod ra3;
pub mod samples;
pub mod sc;
