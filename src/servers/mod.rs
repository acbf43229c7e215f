//! The emulated game backends. Each is an ordinary network server with
//! `run(listener, context, shutdown)`; none records traffic itself (the tap in front does).
