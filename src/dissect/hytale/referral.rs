//! The Numdrassl proxy's HMAC-signed referral data: building it, verifying it as a backend
//! does, and its sub-tree in a decoded Connect packet.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::decode::time_text;
use super::wire::{le_i32, le_i64, uuid_text};
use super::{REFERRAL_MAX_SKEW_SECS, REFERRAL_MAX_STRING, REFERRAL_MIN_LEN, REFERRAL_VERSION};
use crate::dissect::{Node, Value};

type HmacSha256 = Hmac<Sha256>;

/// The player facts the proxy signs for a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referral {
    /// 16 bytes, most significant first (as in the Connect packet).
    pub uuid: [u8; 16],
    pub username: String,
    pub backend: String,
    /// `"/<ip>:<port>"` or `"unknown"`.
    pub remote_address: String,
    /// Unix seconds.
    pub timestamp: i32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferralError {
    #[error("referral data is {0} bytes, shorter than the minimum {REFERRAL_MIN_LEN}")]
    TooShort(usize),
    #[error("referral data version {0}, expected {REFERRAL_VERSION}")]
    Version(i32),
    #[error("referral {field}: {reason}")]
    Malformed { field: &'static str, reason: String },
    #[error(
        "referral timestamp {timestamp} is {skew} s from now (limit {REFERRAL_MAX_SKEW_SECS} s)"
    )]
    Expired { timestamp: i32, skew: i64 },
    #[error("referral HMAC does not match")]
    BadHmac,
    #[error("referral {0} does not match")]
    Mismatch(&'static str),
}

impl Referral {
    /// The checks a backend makes after the HMAC: uuid and username equal to the Connect
    /// packet's, backend name equal (ignoring case) to its own.
    pub fn check_player(
        &self,
        uuid: &[u8; 16],
        username: &str,
        backend: &str,
    ) -> Result<(), ReferralError> {
        if &self.uuid != uuid {
            return Err(ReferralError::Mismatch("uuid"));
        }
        if self.username != username {
            return Err(ReferralError::Mismatch("username"));
        }
        if !self.backend.eq_ignore_ascii_case(backend) {
            return Err(ReferralError::Mismatch("backend name"));
        }
        Ok(())
    }
}

fn referral_mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this never takes the fallback.
    HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()))
}

fn put_ref_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Builds signed referral data (strings over 256 bytes make backends refuse it).
pub fn referral_data(secret: &[u8], r: &Referral) -> Vec<u8> {
    let (msb, lsb) = uuid_halves(&r.uuid);
    let mut out = Vec::with_capacity(
        REFERRAL_MIN_LEN + r.username.len() + r.backend.len() + r.remote_address.len(),
    );
    out.extend_from_slice(&REFERRAL_VERSION.to_le_bytes());
    out.extend_from_slice(&msb.to_le_bytes());
    out.extend_from_slice(&lsb.to_le_bytes());
    put_ref_string(&mut out, &r.username);
    put_ref_string(&mut out, &r.backend);
    put_ref_string(&mut out, &r.remote_address);
    out.extend_from_slice(&r.timestamp.to_le_bytes());
    let mut mac = referral_mac(secret);
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}

fn uuid_halves(u: &[u8; 16]) -> (i64, i64) {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&u[..8]);
    lo.copy_from_slice(&u[8..]);
    (i64::from_be_bytes(hi), i64::from_be_bytes(lo))
}

fn uuid_from_halves(msb: i64, lsb: i64) -> [u8; 16] {
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&msb.to_be_bytes());
    u[8..].copy_from_slice(&lsb.to_be_bytes());
    u
}

/// A referral string at `at`: `(length, text bytes start, end)`.
fn ref_string(d: &[u8], at: usize) -> Result<(i32, usize, usize), String> {
    let len = le_i32(d, at).ok_or("truncated length")?;
    let n = usize::try_from(len)
        .ok()
        .filter(|&n| n <= REFERRAL_MAX_STRING)
        .ok_or(format!("length {len} outside 0..={REFERRAL_MAX_STRING}"))?;
    let start = at + 4;
    if d.len() < start + n {
        return Err(format!("length {n} runs past the end"));
    }
    Ok((len, start, start + n))
}

/// Checks referral data the way a backend does, in its order: minimum length, version,
/// string lengths, timestamp within 300 s of `now` (unix seconds), HMAC (constant time).
/// The caller then checks uuid, username and backend name ([`Referral::check_player`]).
pub fn verify_referral(data: &[u8], secret: &[u8], now: i64) -> Result<Referral, ReferralError> {
    if data.len() < REFERRAL_MIN_LEN {
        return Err(ReferralError::TooShort(data.len()));
    }
    let version = le_i32(data, 0).unwrap_or(0);
    if version != REFERRAL_VERSION {
        return Err(ReferralError::Version(version));
    }
    let msb = le_i64(data, 4).unwrap_or(0);
    let lsb = le_i64(data, 12).unwrap_or(0);
    let mut at = 20;
    let mut strings = Vec::with_capacity(3);
    for field in ["username", "backend name", "remote address"] {
        let (_, start, end) =
            ref_string(data, at).map_err(|reason| ReferralError::Malformed { field, reason })?;
        let s = std::str::from_utf8(data.get(start..end).unwrap_or(&[])).map_err(|e| {
            ReferralError::Malformed {
                field,
                reason: format!("invalid UTF-8: {e}"),
            }
        })?;
        strings.push(s.to_string());
        at = end;
    }
    let malformed = |field, reason: &str| ReferralError::Malformed {
        field,
        reason: reason.into(),
    };
    let timestamp = le_i32(data, at).ok_or(malformed("timestamp", "truncated"))?;
    let signed = at + 4;
    let tag = data
        .get(signed..signed + 32)
        .ok_or(malformed("hmac", "truncated"))?;
    if data.len() != signed + 32 {
        return Err(malformed("hmac", "bytes after the HMAC"));
    }
    let skew = (now - i64::from(timestamp)).abs();
    if skew > REFERRAL_MAX_SKEW_SECS {
        return Err(ReferralError::Expired { timestamp, skew });
    }
    let mut mac = referral_mac(secret);
    mac.update(data.get(..signed).unwrap_or(&[]));
    mac.verify_slice(tag).map_err(|_| ReferralError::BadHmac)?;
    let mut it = strings.into_iter();
    Ok(Referral {
        uuid: uuid_from_halves(msb, lsb),
        username: it.next().unwrap_or_default(),
        backend: it.next().unwrap_or_default(),
        remote_address: it.next().unwrap_or_default(),
        timestamp,
    })
}

/// The `referral` sub-tree of referral data `d` found at `at` of the message.
pub(super) fn referral_tree(d: &[u8], at: usize, secret: Option<&[u8]>) -> Node {
    let mut node = Node::group("referral", at..at + d.len()).with_kind("referral");
    if d.len() < REFERRAL_MIN_LEN {
        node = node.with_error(format!(
            "{} bytes, shorter than the minimum {REFERRAL_MIN_LEN}",
            d.len()
        ));
    }
    let r = |a: usize, b: usize| at + a..at + b;
    let Some(version) = le_i32(d, 0) else {
        return node;
    };
    let mut v = Node::new("version", r(0, 4), Value::Int(version.into())).with_kind("i32le");
    if version != REFERRAL_VERSION {
        v = v.with_error(format!("expected version {REFERRAL_VERSION}"));
    }
    node.push(v);
    let (Some(msb), Some(lsb)) = (le_i64(d, 4), le_i64(d, 12)) else {
        if node.error().is_none() {
            node.set_error(Some("truncated uuid".into()));
        }
        return node;
    };
    node.push(Node::new("uuidMsb", r(4, 12), Value::Int(msb)).with_kind("i64le"));
    node.push(Node::new("uuidLsb", r(12, 20), Value::Int(lsb)).with_kind("i64le"));
    node.push(
        Node::new(
            "uuid",
            r(4, 20),
            Value::Text(uuid_text(&uuid_from_halves(msb, lsb)).into()),
        )
        .derived(),
    );
    let mut pos = 20;
    for name in ["username", "backendName", "remoteAddress"] {
        match ref_string(d, pos) {
            Ok((len, start, end)) => {
                let bytes = d.get(start..end).unwrap_or(&[]);
                let len_node =
                    Node::new("length", r(pos, start), Value::Int(len.into())).with_kind("i32le");
                let s = match std::str::from_utf8(bytes) {
                    Ok(s) => Node::new(name, r(pos, end), Value::Text(s.into())),
                    Err(e) => Node::new(name, r(pos, end), Value::Bytes(bytes.into()))
                        .with_error(format!("invalid UTF-8: {e}")),
                };
                node.push(s.with_kind("string").with_children(vec![len_node]));
                pos = end;
            }
            Err(reason) => {
                let end = (pos + 4).min(d.len());
                node.push(Node::new(name, r(pos, end), Value::None).with_error(reason));
                return node;
            }
        }
    }
    let Some(ts) = le_i32(d, pos) else {
        node.push(Node::new("timestamp", r(pos, d.len()), Value::None).with_error("truncated"));
        return node;
    };
    let mut ts_node =
        Node::new("timestamp", r(pos, pos + 4), Value::Int(ts.into())).with_kind("i32le");
    if let Some(t) = time_text(ts.into(), 0) {
        ts_node = ts_node.with_display(format!("{ts} ({t})"));
    }
    node.push(ts_node);
    let signed = pos + 4;
    let Some(tag) = d.get(signed..signed + 32) else {
        node.push(
            Node::new(
                "hmac",
                r(signed, d.len()),
                Value::Bytes(d.get(signed..).unwrap_or(&[]).into()),
            )
            .with_error("truncated: HMAC-SHA256 needs 32 bytes"),
        );
        return node;
    };
    node.push(
        Node::new("hmac", r(signed, signed + 32), Value::Bytes(tag.into()))
            .with_kind("hmac-sha256"),
    );
    if let Some(extra) = d.get(signed + 32..).filter(|e| !e.is_empty()) {
        node.push(
            Node::new(
                "trailing",
                r(signed + 32, d.len()),
                Value::Bytes(extra.into()),
            )
            .with_error(format!("{} bytes after the HMAC", extra.len())),
        );
    }
    if let Some(secret) = secret {
        let mut mac = referral_mac(secret);
        mac.update(d.get(..signed).unwrap_or(&[]));
        let ok = mac.verify_slice(tag).is_ok();
        let mut check = Node::new("hmac valid", r(signed, signed + 32), Value::Bool(ok)).derived();
        if !ok {
            check = check.with_error("HMAC does not match the configured referral secret");
        }
        node.push(check);
    }
    node
}

/// Adds derived checks that the referral's uuid and username equal the packet's own.
pub(super) fn check_referral_identity(fields: &mut [Node]) {
    let uuid = fields
        .iter()
        .find(|n| n.name == "uuid")
        .and_then(|n| n.value.as_text().map(str::to_owned));
    let username = fields
        .iter()
        .find(|n| n.name == "username")
        .and_then(|n| n.value.as_text().map(str::to_owned));
    for field in fields.iter_mut().filter(|n| n.kind() == Some("referral")) {
        let Some(referral) = field.child_mut("referral") else {
            continue;
        };
        let mut checks = Vec::new();
        for (name, theirs, ours) in [
            (
                "uuid matches Connect",
                referral.child("uuid"),
                uuid.as_deref(),
            ),
            (
                "username matches Connect",
                referral.child("username"),
                username.as_deref(),
            ),
        ] {
            let (Some(theirs), Some(ours)) = (theirs, ours) else {
                continue;
            };
            let ok = theirs.value.as_text() == Some(ours);
            let mut check = Node::new(name, theirs.range.clone(), Value::Bool(ok)).derived();
            if !ok {
                check = check.with_error(format!(
                    "referral has {}, the packet {ours:?}",
                    theirs.value.render()
                ));
            }
            checks.push(check);
        }
        referral.children.extend(checks);
    }
}
