//! Relaying what is not HTTP after `CONNECT`, recorded read by read.

use super::prefixed::Prefixed;
use super::tunnel::with_default_port;
use super::*;

pub(super) async fn relay_plain(
    rec: &ConnRecorder,
    client: Prefixed<TcpStream>,
    authority: &str,
) -> String {
    let target = with_default_port(authority, 80);
    let upstream = match TcpStream::connect(&target).await {
        Ok(upstream) => upstream,
        Err(e) => return format!("upstream: connect to {target}: {e}"),
    };
    let _ = upstream.set_nodelay(true);
    if let Ok(addr) = upstream.peer_addr() {
        rec.set_server(addr);
    }
    relay_recorded(rec, client, upstream).await
}

/// Relays both directions, recording every read, passing each side's end of stream on as
/// a half-close.
pub(super) async fn relay_recorded<C, S>(rec: &ConnRecorder, client: C, server: S) -> String
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let up = pump(
        rec,
        Direction::ClientToServer,
        &mut client_read,
        &mut server_write,
    );
    let down = pump(
        rec,
        Direction::ServerToClient,
        &mut server_read,
        &mut client_write,
    );
    let (up, down) = tokio::join!(up, down);
    match (up, down) {
        (Err(e), _) => format!("client side: {e}"),
        (_, Err(e)) => format!("server side: {e}"),
        (Ok(()), Ok(())) => "closed by both sides".into(),
    }
}

async fn pump<R, W>(rec: &ConnRecorder, dir: Direction, from: &mut R, to: &mut W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // A peer that already closed cannot take the half-close; nothing is lost.
            let _ = to.shutdown().await;
            return Ok(());
        }
        rec.packet(dir, &buf[..n]);
        to.write_all(&buf[..n]).await?;
    }
}
