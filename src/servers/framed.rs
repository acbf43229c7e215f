//! Buffering, framing, the size limit and the bad-message limit of a message protocol,
//! written once: a [`Protocol`] says where a message ends and answers one whole message;
//! [`Framed`] turns it into a [`Session`] for the connection loop.

use crate::dissect::Framing;

use super::connection::{Flow, Session};

/// How one message went, as the protocol saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answered (or rightly unanswered); the connection goes on.
    Ok,
    /// Malformed: answered in the protocol's own error form and counted against
    /// [`Limits::max_bad_messages`].
    Bad,
    /// The connection ends now (a goodbye, a fatal error already written).
    Close,
}

/// Why [`Framed`] gave up on the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A message (or a buffered start of one) over [`Limits::max_message`].
    TooLarge(usize),
    /// No telling where the next message starts.
    Unframeable(String),
}

/// What a connection tolerates.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest message accepted from a client, in bytes.
    pub max_message: usize,
    /// Malformed messages tolerated on one connection; the next one closes it.
    pub max_bad_messages: u32,
}

/// A message protocol over a byte stream.
pub trait Protocol: Send {
    /// Prefixes log lines (`fesl`, `gp`).
    const NAME: &'static str;

    fn limits(&self) -> Limits;

    /// Where the first message in `buf` ends (the protocol's codec).
    fn frame(&self, buf: &[u8]) -> Framing;

    /// Answers one whole message into `out`.
    fn message(
        &mut self,
        message: &[u8],
        out: &mut Vec<u8>,
    ) -> impl std::future::Future<Output = Verdict> + Send;

    /// Written just before the connection closes for `why` (GP's fatal `\error\`); nothing
    /// by default.
    fn refuse(&mut self, why: &Refusal, out: &mut Vec<u8>) {
        let _ = (why, out);
    }

    /// See [`Session::greeting`].
    fn greeting(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// See [`Session::keep_alive`].
    fn keep_alive(&self) -> Option<Vec<u8>> {
        None
    }
}

/// A [`Protocol`] with its input buffer and bad-message count: the socket-free session core
/// that tests and fuzzers drive and the connection loop runs.
pub struct Framed<P> {
    protocol: P,
    peer: String,
    buf: Vec<u8>,
    bad: u32,
}

impl<P: Protocol> Framed<P> {
    pub fn wrap(protocol: P, peer: impl Into<String>) -> Self {
        Framed {
            protocol,
            peer: peer.into(),
            buf: Vec::new(),
            bad: 0,
        }
    }

    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// Whether a message is half received.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Malformed messages seen so far.
    pub fn bad_messages(&self) -> u32 {
        self.bad
    }

    /// Takes client bytes (any split) and appends the replies to `out`.
    pub async fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Flow {
        self.buf.extend_from_slice(data);
        let limits = self.protocol.limits();
        let mut at = 0;
        let flow = loop {
            let rest = &self.buf[at..];
            if rest.is_empty() {
                break Flow::Continue;
            }
            let refusal = match self.protocol.frame(rest) {
                Framing::Complete(n) | Framing::NeedMore(Some(n)) if n > limits.max_message => {
                    Refusal::TooLarge(n)
                }
                Framing::NeedMore(_) if rest.len() > limits.max_message => {
                    Refusal::TooLarge(rest.len())
                }
                Framing::NeedMore(_) => break Flow::Continue,
                Framing::Complete(n) => {
                    let message = rest[..n].to_vec();
                    at += n;
                    match self.protocol.message(&message, out).await {
                        Verdict::Ok => continue,
                        Verdict::Close => break Flow::Close,
                        Verdict::Bad => {
                            self.bad += 1;
                            if self.bad > limits.max_bad_messages {
                                tracing::warn!(peer = %self.peer, "{}: too many malformed messages; closing", P::NAME);
                                break Flow::Close;
                            }
                            continue;
                        }
                    }
                }
                Framing::Unframeable { reason, .. } => Refusal::Unframeable(reason),
            };
            match &refusal {
                Refusal::TooLarge(size) => {
                    tracing::warn!(peer = %self.peer, size, "{}: message larger than the limit; closing", P::NAME)
                }
                Refusal::Unframeable(reason) => {
                    tracing::warn!(peer = %self.peer, %reason, "{}: unframeable input; closing", P::NAME)
                }
            }
            self.protocol.refuse(&refusal, out);
            break Flow::Close;
        };
        self.buf.drain(..at);
        if flow == Flow::Close {
            self.buf.clear();
        }
        flow
    }
}

impl<P: Protocol> Session for Framed<P> {
    fn greeting(&mut self) -> Vec<u8> {
        self.protocol.greeting()
    }

    fn keep_alive(&self) -> Option<Vec<u8>> {
        self.protocol.keep_alive()
    }

    fn feed(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> impl std::future::Future<Output = Flow> + Send {
        Framed::feed(self, data, out)
    }

    fn has_partial(&self) -> bool {
        Framed::has_partial(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines; `bad` lines are malformed, `bye` ends the connection, the rest are echoed.
    struct Lines;

    impl Protocol for Lines {
        const NAME: &'static str = "lines";

        fn limits(&self) -> Limits {
            Limits {
                max_message: 16,
                max_bad_messages: 2,
            }
        }

        fn frame(&self, buf: &[u8]) -> Framing {
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => Framing::Complete(i + 1),
                None if buf.first() == Some(&0) => Framing::Unframeable {
                    skip: 1,
                    reason: "NUL".into(),
                },
                None => Framing::NeedMore(None),
            }
        }

        async fn message(&mut self, message: &[u8], out: &mut Vec<u8>) -> Verdict {
            match message {
                b"bad\n" => {
                    out.extend_from_slice(b"ERR\n");
                    Verdict::Bad
                }
                b"bye\n" => Verdict::Close,
                _ => {
                    out.extend_from_slice(message);
                    Verdict::Ok
                }
            }
        }

        fn refuse(&mut self, why: &Refusal, out: &mut Vec<u8>) {
            out.extend_from_slice(format!("REFUSED {why:?}\n").as_bytes());
        }
    }

    fn feed(s: &mut Framed<Lines>, bytes: &[u8]) -> (Vec<u8>, Flow) {
        let mut out = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let flow = rt.block_on(s.feed(bytes, &mut out));
        (out, flow)
    }

    #[test]
    fn the_bad_message_after_the_limit_closes_and_each_is_answered() {
        let mut s = Framed::wrap(Lines, "t");
        assert_eq!(
            feed(&mut s, b"hi\nbad\n"),
            (b"hi\nERR\n".to_vec(), Flow::Continue)
        );
        assert_eq!(
            feed(&mut s, b"bad\nok\n"),
            (b"ERR\nok\n".to_vec(), Flow::Continue)
        );
        assert_eq!(s.bad_messages(), 2);
        // The third is answered too, then the connection ends; what followed is not read.
        assert_eq!(
            feed(&mut s, b"bad\nlater\n"),
            (b"ERR\n".to_vec(), Flow::Close)
        );
    }

    #[test]
    fn partial_messages_wait_and_oversized_or_unframeable_input_is_refused() {
        let mut s = Framed::wrap(Lines, "t");
        assert_eq!(feed(&mut s, b"hel"), (Vec::new(), Flow::Continue));
        assert!(s.has_partial());
        assert_eq!(feed(&mut s, b"lo\n"), (b"hello\n".to_vec(), Flow::Continue));
        assert!(!s.has_partial());
        let (out, flow) = feed(&mut s, &[b'x'; 17]);
        assert_eq!(
            (out, flow),
            (b"REFUSED TooLarge(17)\n".to_vec(), Flow::Close)
        );
        assert!(!s.has_partial());
        let mut s = Framed::wrap(Lines, "t");
        let (out, flow) = feed(&mut s, b"\0");
        assert_eq!(flow, Flow::Close);
        assert_eq!(out, b"REFUSED Unframeable(\"NUL\")\n");
        let mut s = Framed::wrap(Lines, "t");
        assert_eq!(feed(&mut s, b"bye\nhi\n"), (Vec::new(), Flow::Close));
    }
}
