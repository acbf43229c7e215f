//! Writing a capture as sd.json.

use super::*;

#[derive(Serialize)]
struct OutRecord<'a> {
    timestamp: String,
    direction: &'static str,
    size: usize,
    #[serde(rename = "type")]
    kind: &'a str,
    hex_data: String,
    ascii_data: String,
    connection: String,
}

/// Writes the packets of `data` (optionally only those `keep` accepts) in id order, which
/// for an imported file is the file's own order.
pub fn export(
    data: &StoreData,
    out: impl Write,
    keep: impl Fn(ConnectionId) -> bool,
) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, out);
    out.write_all(b"[")?;
    let mut first = true;
    let mut client_text: HashMap<ConnectionId, String> = HashMap::new();
    for p in data.packets() {
        if !keep(p.connection) {
            continue;
        }
        let connection = client_text
            .entry(p.connection)
            .or_insert_with(|| {
                data.connection(p.connection)
                    .map(|c| c.client.to_string())
                    .unwrap_or_default()
            })
            .clone();
        let rec = OutRecord {
            timestamp: format_timestamp(p.timestamp),
            direction: p.direction.as_str(),
            size: p.data.len(),
            kind: p.label.unwrap_or(UNLABELLED),
            hex_data: hex::encode(p.data),
            ascii_data: ascii_preview(p.data),
            connection,
        };
        out.write_all(if first { b"\n  " } else { b",\n  " })?;
        first = false;
        write_pretty_indented(&mut out, &rec)?;
    }
    out.write_all(if first { b"]\n" } else { b"\n]\n" })?;
    out.flush()
}

/// Pretty-prints one record at the array's indentation, like Python's `json.dump(indent=2)`.
fn write_pretty_indented(out: &mut impl Write, rec: &OutRecord<'_>) -> io::Result<()> {
    let text = serde_json::to_string_pretty(rec).map_err(io::Error::other)?;
    let mut lines = text.split('\n');
    if let Some(first) = lines.next() {
        out.write_all(first.as_bytes())?;
    }
    for line in lines {
        out.write_all(b"\n  ")?;
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}
