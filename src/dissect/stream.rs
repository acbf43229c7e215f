//! Turns a connection's packets into messages: buffers each direction, asks the dissector
//! where messages end, and maps every message back to the packet and offset where it starts.
//! A message may span packets and a packet may hold several messages.

use crate::capture::{Direction, PacketId, PacketRef};

use super::{Context, Dissector, Framing, Message, Node, StreamDecoder, Value};

/// A message waiting for more bytes than this is given up as undecodable, so a lying
/// length field cannot make us hold a whole capture in one buffer.
pub const MAX_PENDING: usize = 64 * 1024 * 1024;

/// One message of a connection, placed in the capture.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub direction: Direction,
    /// The packet holding the message's first byte, and the offset of that byte in it.
    pub packet: PacketId,
    pub offset: usize,
    /// The message's bytes (they may come from several packets).
    pub bytes: Vec<u8>,
    pub message: Message,
}

/// Decodes every packet of one connection, both directions, in the order given. The
/// connection may go on after them: bytes left over are reported as incomplete.
pub fn decode_connection<'a>(
    dissector: &dyn Dissector,
    ctx: &Context,
    packets: impl IntoIterator<Item = PacketRef<'a>>,
) -> Vec<Decoded> {
    decode_connection_to(dissector, ctx, packets, false)
}

/// [`decode_connection`] for packets that end with the connection's close (`ended`), which
/// completes messages that run until it.
pub fn decode_connection_to<'a>(
    dissector: &dyn Dissector,
    ctx: &Context,
    packets: impl IntoIterator<Item = PacketRef<'a>>,
    ended: bool,
) -> Vec<Decoded> {
    let mut decoder = ConnectionDecoder::new(dissector, ctx);
    let mut out = Vec::new();
    for p in packets {
        decoder.push(ctx, p.id, p.data, p.direction, &mut out);
    }
    decoder.finish(ctx, ended, &mut out);
    out
}

/// One connection's two directions, decoded as its packets come, with the JWTs in every
/// message annotated: what [`decode_connection_to`] does at once, for a growing capture.
pub struct ConnectionDecoder {
    c2s: DirectionStream,
    s2c: DirectionStream,
}

impl ConnectionDecoder {
    pub fn new(dissector: &dyn Dissector, ctx: &Context) -> Self {
        let (client, server) = dissector.connection_decoders(ctx);
        ConnectionDecoder {
            c2s: DirectionStream::new(client),
            s2c: DirectionStream::new(server),
        }
    }

    /// Decodes the next packet; the messages it completes are appended to `out`.
    pub fn push(
        &mut self,
        ctx: &Context,
        id: PacketId,
        data: &[u8],
        direction: Direction,
        out: &mut Vec<Decoded>,
    ) {
        let from = out.len();
        let stream = match direction {
            Direction::ClientToServer => &mut self.c2s,
            Direction::ServerToClient => &mut self.s2c,
        };
        stream.push(id, data, direction, out);
        annotate_from(out, from, ctx);
    }

    /// What is left of both directions: completed by the close when `ended`, else
    /// reported as incomplete.
    pub fn finish(&mut self, ctx: &Context, ended: bool, out: &mut Vec<Decoded>) {
        let from = out.len();
        self.c2s.finish(Direction::ClientToServer, ended, out);
        self.s2c.finish(Direction::ServerToClient, ended, out);
        annotate_from(out, from, ctx);
    }
}

fn annotate_from(out: &mut [Decoded], from: usize, ctx: &Context) {
    for decoded in &mut out[from..] {
        annotate_tokens(decoded, ctx);
    }
}

/// JWTs can sit in any protocol's strings (headers, JSON, FESL values, Hytale tokens), so
/// they are decoded in one pass over every tree here rather than by each dissector.
fn annotate_tokens(decoded: &mut Decoded, ctx: &Context) {
    super::jwt::annotate(&mut decoded.message.tree, &decoded.bytes, &ctx.jwt_keys);
    for buffer in &mut decoded.message.derived {
        super::jwt::annotate(&mut buffer.tree, &buffer.bytes, &ctx.jwt_keys);
    }
}

/// The buffered bytes of one direction.
pub struct DirectionStream {
    decoder: Box<dyn StreamDecoder>,
    pending: Vec<u8>,
    /// For each packet with bytes in `pending`: where that packet's first byte sits relative
    /// to `pending[0]` (negative when the packet began before the bytes still pending).
    origins: Vec<(PacketId, isize)>,
}

impl DirectionStream {
    pub fn new(decoder: Box<dyn StreamDecoder>) -> Self {
        DirectionStream {
            decoder,
            pending: Vec::new(),
            origins: Vec::new(),
        }
    }

    /// Adds one packet's bytes and emits every message completed by them.
    pub fn push(&mut self, id: PacketId, data: &[u8], dir: Direction, out: &mut Vec<Decoded>) {
        if self.pending.is_empty() {
            // The common case: the packet starts on a message boundary. Decode straight
            // from it and keep only a trailing partial message.
            let used = self.drain(data, dir, out, |at| (id, at));
            if used < data.len() {
                self.pending.extend_from_slice(&data[used..]);
                self.origins.push((id, -(used as isize)));
            }
            return;
        }
        self.origins.push((id, self.pending.len() as isize));
        self.pending.extend_from_slice(data);
        let mut pending = std::mem::take(&mut self.pending);
        let origins = std::mem::take(&mut self.origins);
        let used = self.drain(&pending, dir, out, |at| locate(&origins, at));
        if used < pending.len() {
            // Keep the buffer rather than copy its tail: a large message arriving in many
            // small packets would otherwise be copied once per packet.
            pending.drain(..used);
            self.pending = pending;
            let shift = used as isize;
            // Keep the packet holding the new first byte and every later one.
            let first = origins.iter().rposition(|&(_, b)| b <= shift).unwrap_or(0);
            self.origins = origins[first..]
                .iter()
                .map(|&(pid, begins)| (pid, begins - shift))
                .collect();
        }
    }

    /// Frames and decodes messages from the start of `buf`; returns how many bytes it used.
    fn drain(
        &mut self,
        buf: &[u8],
        dir: Direction,
        out: &mut Vec<Decoded>,
        origin_of: impl Fn(usize) -> (PacketId, usize),
    ) -> usize {
        let mut at = 0;
        while at < buf.len() {
            let rest = &buf[at..];
            let (len, message) = match self.decoder.frame(rest) {
                Framing::Complete(n) if n > 0 && n <= rest.len() => {
                    (n, self.decoder.decode(&rest[..n]))
                }
                Framing::NeedMore(need) => {
                    let too_big = rest.len() > MAX_PENDING || need.is_some_and(|n| n > MAX_PENDING);
                    if !too_big {
                        break;
                    }
                    (
                        rest.len(),
                        undecodable(rest.len(), "message larger than 64 MiB"),
                    )
                }
                Framing::Unframeable { skip, reason } => {
                    let skip = skip.clamp(1, rest.len());
                    (skip, undecodable(skip, &reason))
                }
                // A dissector that claims an empty or overlong message would stall or panic
                // the driver; treat it as one undecodable byte and carry on.
                Framing::Complete(_) => (1, undecodable(1, "dissector framed an invalid length")),
            };
            let (packet, offset) = origin_of(at);
            out.push(Decoded {
                direction: dir,
                packet,
                offset,
                bytes: rest[..len].to_vec(),
                message,
            });
            at += len;
        }
        at
    }

    /// Reports what is left at the end of the packets. `ended`: the connection closed there,
    /// which completes messages that run until the close.
    pub fn finish(&mut self, dir: Direction, ended: bool, out: &mut Vec<Decoded>) {
        if self.pending.is_empty() {
            return;
        }
        let (packet, offset) = locate(&self.origins, 0);
        let bytes = std::mem::take(&mut self.pending);
        let message = ended
            .then(|| self.decoder.finish(&bytes))
            .flatten()
            .unwrap_or_else(|| {
                undecodable(bytes.len(), "incomplete message at the end of the capture")
            });
        out.push(Decoded {
            direction: dir,
            packet,
            offset,
            bytes,
            message,
        });
        self.origins.clear();
    }
}

/// The packet and in-packet offset of byte `at` of the pending buffer.
fn locate(origins: &[(PacketId, isize)], at: usize) -> (PacketId, usize) {
    let at = at as isize;
    let (packet, begins) = origins
        .iter()
        .take_while(|&&(_, begins)| begins <= at)
        .last()
        .copied()
        .unwrap_or((PacketId(0), 0));
    (packet, (at - begins).max(0) as usize)
}

/// A span the dissector could not frame.
pub fn undecodable(len: usize, reason: &str) -> Message {
    Message::new(
        "undecodable",
        Node::new("undecodable", 0..len, Value::None).with_error(reason.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Connection, NewPacket, StoreData, Timestamp, Transport};

    /// `[len u8][body]`; a zero length byte is not a message start.
    struct Lp;
    struct LpDecoder;

    impl StreamDecoder for LpDecoder {
        fn frame(&mut self, buf: &[u8]) -> Framing {
            match buf.first() {
                None => Framing::NeedMore(None),
                Some(0) => Framing::Unframeable {
                    skip: 1,
                    reason: "zero length".into(),
                },
                Some(&n) if buf.len() > n as usize => Framing::Complete(n as usize + 1),
                Some(&n) => Framing::NeedMore(Some(n as usize + 1)),
            }
        }

        fn decode(&mut self, msg: &[u8]) -> Message {
            Message::new(
                String::from_utf8_lossy(&msg[1..]).into_owned(),
                Node::group("lp", 0..msg.len()),
            )
        }
    }

    impl Dissector for Lp {
        fn name(&self) -> &'static str {
            "lp"
        }
        fn decoder(&self, _: Direction, _: &Context) -> Box<dyn StreamDecoder> {
            Box::new(LpDecoder)
        }
    }

    fn run(chunks: &[&[u8]]) -> Vec<(String, u64, usize, Vec<u8>)> {
        let mut data = StoreData::new();
        let c = data.add_connection(Connection::new(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            Transport::Tcp,
            Timestamp(0),
        ));
        for chunk in chunks {
            data.append(NewPacket::new(
                c,
                Direction::ClientToServer,
                Timestamp(0),
                chunk.to_vec(),
            ))
            .unwrap();
        }
        decode_connection(&Lp, &Context::default(), data.packets_of(c))
            .into_iter()
            .map(|d| (d.message.label, d.packet.0, d.offset, d.bytes))
            .collect()
    }

    #[test]
    fn several_messages_in_one_packet() {
        let got = run(&[b"\x02ab\x01c"]);
        assert_eq!(got[0], ("ab".into(), 0, 0, b"\x02ab".to_vec()));
        assert_eq!(got[1], ("c".into(), 0, 3, b"\x01c".to_vec()));
    }

    #[test]
    fn a_message_across_packets_starts_where_its_first_byte_is() {
        let got = run(&[b"\x01a\x05he", b"l", b"lo\x02x", b"y"]);
        let labels: Vec<_> = got.iter().map(|g| (g.0.as_str(), g.1, g.2)).collect();
        assert_eq!(labels, vec![("a", 0, 0), ("hello", 0, 2), ("xy", 2, 2)]);
        assert_eq!(got[1].3, b"\x05hello");
    }

    #[test]
    fn unframeable_bytes_are_skipped_and_framing_resumes() {
        let got = run(&[b"\x00\x00\x01z"]);
        let labels: Vec<_> = got.iter().map(|g| (g.0.as_str(), g.2)).collect();
        assert_eq!(
            labels,
            vec![("undecodable", 0), ("undecodable", 1), ("z", 2)]
        );
    }

    #[test]
    fn leftover_bytes_are_reported_at_the_end() {
        let got = run(&[b"\x01a\x09abc", b"de"]);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[1].0.as_str(), got[1].1, got[1].2),
            ("undecodable", 0, 2)
        );
        assert_eq!(got[1].3, b"\x09abcde");
    }
}
