//! Owns the tokio runtime; starts the proxy, taps and emulated servers from configuration,
//! merges their events into the capture and takes commands from the CLI and the GUI.
